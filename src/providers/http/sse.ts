/**
 * Yields the `data` payload of each server-sent event in a response body, in order.
 *
 * Follows the SSE line rules (LF, CRLF or CR line ends; `data:` lines of one event joined with LF; comment
 * lines starting with `:` and other fields ignored). It does not interpret `[DONE]`: the caller stops there.
 * When the consumer stops early the body is cancelled so the connection is released.
 */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let data: string[] = [];
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // A CR at the very end may be the first half of a CRLF split across chunks: keep it until more arrives.
      const lines = takeLines(buffer, !done);
      buffer = lines.rest;
      for (const line of lines.complete) {
        if (line === "") {
          if (data.length > 0) yield data.join("\n");
          data = [];
          continue;
        }
        const value = dataField(line);
        if (value !== undefined) data.push(value);
      }
      if (done) break;
    }
    // Some servers end the stream without the blank line after the last event; deliver it anyway.
    if (buffer !== "") {
      const value = dataField(buffer);
      if (value !== undefined) data.push(value);
    }
    if (data.length > 0) yield data.join("\n");
    finished = true;
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

function dataField(line: string): string | undefined {
  if (!line.startsWith("data")) return undefined;
  if (line === "data") return "";
  if (line[4] !== ":") return undefined;
  const value = line.slice(5);
  return value.startsWith(" ") ? value.slice(1) : value;
}

function takeLines(buffer: string, more: boolean): { complete: string[]; rest: string } {
  const complete: string[] = [];
  let start = 0;
  for (let i = 0; i < buffer.length; i++) {
    const ch = buffer[i];
    if (ch === "\n") {
      complete.push(buffer.slice(start, i));
      start = i + 1;
    } else if (ch === "\r") {
      if (i + 1 === buffer.length && more) break;
      complete.push(buffer.slice(start, i));
      if (buffer[i + 1] === "\n") i++;
      start = i + 1;
    }
  }
  return { complete, rest: buffer.slice(start) };
}
