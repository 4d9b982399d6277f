import { z } from "zod";

/** Query parameter names that carry credentials; they belong in `apiKeyEnv`, never in a stored URL. */
const SECRET_QUERY = /key|token|secret|password|passwd|auth|sig|credential/i;

/**
 * An HTTP API root: http(s) only, no user info (`user:password@host` would put a password in the store's copy
 * of the config and in error rows) and no credential-like query parameters (a non-secret one such as
 * `api-version` is kept and sent with every request).
 */
export const BaseUrlSchema = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: "custom", message: "must be an absolute http(s) URL, e.g. http://127.0.0.1:8000/v1" });
    return;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    ctx.addIssue({ code: "custom", message: `must use http or https, not ${url.protocol.replace(/:$/, "")}` });
  }
  if (url.username !== "" || url.password !== "") {
    ctx.addIssue({ code: "custom", message: "must not contain a user name or password (user:password@host); put the API key in an environment variable named by apiKeyEnv" });
  }
  const secrets = [...url.searchParams.keys()].filter((name) => SECRET_QUERY.test(name));
  if (secrets.length > 0) {
    ctx.addIssue({ code: "custom", message: `must not carry credentials in its query (${secrets.join(", ")}); put the API key in an environment variable named by apiKeyEnv` });
  }
  if (url.hash !== "") ctx.addIssue({ code: "custom", message: "must not contain a #fragment" });
});

/**
 * The URL of an endpoint under an API root: `path` (which may carry its own query) is appended to the root's
 * path, and the root's own query parameters (e.g. `api-version`) are kept, so `https://h/v1?api-version=2`
 * with `/chat/completions` gives `https://h/v1/chat/completions?api-version=2`.
 */
export function endpointUrl(baseUrl: string, path: string): string {
  const url = new URL(baseUrl);
  const at = path.indexOf("?");
  const pathname = at < 0 ? path : path.slice(0, at);
  url.pathname = `${url.pathname.replace(/\/+$/, "")}${pathname.startsWith("/") ? "" : "/"}${pathname}`;
  if (at >= 0) for (const [name, value] of new URLSearchParams(path.slice(at + 1))) url.searchParams.append(name, value);
  url.hash = "";
  return url.toString();
}
