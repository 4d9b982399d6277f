import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

/** Debian's chromium (apt install chromium); `ITERALIGN_CHROMIUM` points elsewhere. */
export function chromiumPath(): string {
  const candidates = [process.env.ITERALIGN_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no chromium found (looked at ${candidates.join(", ")}); install it with: apt-get install -y chromium`);
  return found;
}

/** The flags the browser tests run chromium with (headless, no sandbox in containers, nothing fetched in the background). */
export const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_FLAGS, headless: true });
}
