import { build } from "esbuild";

/**
 * What loading `entry` imports at once: the bare packages and our source files reached through static imports
 * (dynamic `import()` edges are not followed: those load only when called).
 */
export async function staticImports(entry: string): Promise<{ packages: Set<string>; files: Set<string> }> {
  const result = await build({ entryPoints: [entry], bundle: true, platform: "node", format: "esm", write: false, metafile: true, packages: "external", logLevel: "silent" });
  const inputs = result.metafile.inputs;
  const files = new Set<string>();
  const packages = new Set<string>();
  const start = Object.keys(inputs).find((k) => entry.endsWith(k));
  if (!start) throw new Error(`esbuild did not report ${entry}`);
  const stack = [start];
  while (stack.length > 0) {
    const file = stack.pop() as string;
    if (files.has(file)) continue;
    files.add(file);
    for (const i of inputs[file]?.imports ?? []) {
      if (i.kind === "dynamic-import") continue;
      if (i.external) packages.add(i.path);
      else stack.push(i.path);
    }
  }
  return { packages, files };
}
