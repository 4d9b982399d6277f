import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { bundleCommit } from "../../src/native/llama-bundle.js";
import {
  checkCudaToolkit,
  DEFAULT_CUDA_HOME,
  ensureLlamaBuild,
  findCudaToolkit,
  findLlamaBuild,
  llamaBuildDir,
  llamaCmakeFlags,
  parseBuildLlamaArgs,
  type CudaToolkitLookup,
} from "../../src/native/llama-build.js";
import { IterAlignError } from "../../src/spec/errors.js";

const temporary: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A lookup whose only executable files are `files`. */
function lookup(env: Record<string, string | undefined>, files: readonly string[] = []): CudaToolkitLookup {
  const executables = new Set(files);
  return { env, isExecutable: (file) => executables.has(file) };
}

function thrown(fn: () => unknown): IterAlignError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(IterAlignError);
    return err as IterAlignError;
  }
  throw new Error("expected an error");
}

describe("llama.cpp build flags and directories", () => {
  it("builds for the CPU by default: no CUDA flag", () => {
    const cpu = llamaCmakeFlags("cpu");
    expect(cpu).toContain("-DCMAKE_BUILD_TYPE=Release");
    expect(cpu).toContain("-DBUILD_SHARED_LIBS=OFF");
    expect(cpu.some((f) => f.includes("CUDA"))).toBe(false);
  });

  it("a CUDA build adds -DGGML_CUDA=ON to the CPU flags, and the compiler when nvcc is not on PATH", () => {
    const cpu = llamaCmakeFlags("cpu");
    expect(llamaCmakeFlags("cuda")).toEqual([...cpu, "-DGGML_CUDA=ON"]);
    expect(llamaCmakeFlags("cuda", { nvcc: "/usr/bin/nvcc", root: "/usr", source: "PATH" })).toEqual([...cpu, "-DGGML_CUDA=ON"]);
    expect(llamaCmakeFlags("cuda", { nvcc: "/opt/cuda-12.4/bin/nvcc", root: "/opt/cuda-12.4", source: "CUDA_HOME" })).toEqual([
      ...cpu,
      "-DGGML_CUDA=ON",
      "-DCMAKE_CUDA_COMPILER=/opt/cuda-12.4/bin/nvcc",
      "-DCUDAToolkit_ROOT=/opt/cuda-12.4",
    ]);
  });

  it("keeps CPU and CUDA builds in separate directories of the same commit", () => {
    const commit = "80fb11ac73e66d89eae2c6a91d8a77428fa733ed";
    const cpu = llamaBuildDir("/cache", commit, "cpu");
    const cuda = llamaBuildDir("/cache", commit, "cuda");
    // The CPU directory is the one earlier versions built into.
    expect(cpu).toBe(path.join("/cache", "llama.cpp", `80fb11ac73e6-${process.platform}-${process.arch}-cpu`));
    expect(llamaBuildDir("/cache", commit)).toBe(cpu);
    expect(cuda).toBe(path.join("/cache", "llama.cpp", `80fb11ac73e6-${process.platform}-${process.arch}-cuda`));
  });

  it("finds a build only in the directory of the backend asked for", () => {
    const cache = tempDir("iteralign-build-cache-");
    const bin = path.join(llamaBuildDir(cache, bundleCommit(), "cuda"), "build", "bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, "llama-server"), "");
    expect(findLlamaBuild(["llama-server"], cache)).toBeUndefined();
    expect(findLlamaBuild(["llama-server"], cache, "cpu")).toBeUndefined();
    const found = findLlamaBuild(["llama-server"], cache, "cuda");
    expect(found).toMatchObject({ gpu: "cuda", binaries: { "llama-server": path.join(bin, "llama-server") } });
  });
});

describe("CUDA toolkit check", () => {
  it("finds nvcc on PATH", () => {
    const found = findCudaToolkit(lookup({ PATH: ["/usr/bin", "/opt/cuda/bin"].join(path.delimiter) }, ["/opt/cuda/bin/nvcc"]));
    expect(found).toEqual({ nvcc: "/opt/cuda/bin/nvcc", root: "/opt/cuda", source: "PATH" });
  });

  it("finds nvcc through CUDA_HOME, ahead of PATH", () => {
    const files = ["/usr/bin/nvcc", "/opt/cuda-12.4/bin/nvcc"];
    expect(findCudaToolkit(lookup({ PATH: "/usr/bin", CUDA_HOME: "/opt/cuda-12.4" }, files))).toEqual({
      nvcc: "/opt/cuda-12.4/bin/nvcc",
      root: "/opt/cuda-12.4",
      source: "CUDA_HOME",
    });
    // A CUDA_HOME without nvcc falls back to PATH.
    expect(findCudaToolkit(lookup({ PATH: "/usr/bin", CUDA_HOME: "/nowhere" }, files))?.source).toBe("PATH");
  });

  it("falls back to /usr/local/cuda, and honours CMake's CUDACXX", () => {
    const fallback = path.join(DEFAULT_CUDA_HOME, "bin", "nvcc");
    expect(findCudaToolkit(lookup({ PATH: "/usr/bin" }, [fallback]))).toMatchObject({ nvcc: fallback, source: "default" });
    expect(findCudaToolkit(lookup({ CUDACXX: "/opt/x/bin/nvcc" }, ["/opt/x/bin/nvcc", fallback]))?.source).toBe("CUDACXX");
    expect(findCudaToolkit(lookup({ CUDACXX: "nvcc", PATH: "/opt/y/bin" }, ["/opt/y/bin/nvcc"]))?.nvcc).toBe("/opt/y/bin/nvcc");
    // CUDACXX names the compiler: when it is not there, nothing else is used.
    expect(findCudaToolkit(lookup({ CUDACXX: "/opt/x/bin/nvcc" }, [fallback]))).toBeUndefined();
  });

  it("by default checks the real file system: an nvcc without the execute bit does not count", () => {
    const dir = tempDir("iteralign-nvcc-");
    const [plain, exec] = [path.join(dir, "plain"), path.join(dir, "exec")];
    for (const d of [plain, exec]) {
      mkdirSync(d);
      writeFileSync(path.join(d, "nvcc"), "#!/bin/sh\n");
    }
    chmodSync(path.join(exec, "nvcc"), 0o755);
    expect(checkCudaToolkit({ env: { PATH: [plain, exec].join(path.delimiter) } })).toEqual({
      nvcc: path.join(exec, "nvcc"),
      root: dir,
      source: "PATH",
    });
    // A CUDA_HOME whose bin/nvcc is not executable is passed over.
    const home = path.join(dir, "home");
    mkdirSync(path.join(home, "bin"), { recursive: true });
    writeFileSync(path.join(home, "bin", "nvcc"), "#!/bin/sh\n");
    expect(findCudaToolkit({ env: { CUDA_HOME: home, PATH: exec } })?.source).toBe("PATH");
    chmodSync(path.join(home, "bin", "nvcc"), 0o755);
    expect(findCudaToolkit({ env: { CUDA_HOME: home, PATH: exec } })).toEqual({ nvcc: path.join(home, "bin", "nvcc"), root: home, source: "CUDA_HOME" });
  });

  it("without nvcc, fails with BUILD_TOOL_MISSING naming nvcc, CUDA_HOME and the toolkit", () => {
    const err = thrown(() => checkCudaToolkit(lookup({ PATH: "/usr/bin" })));
    expect(err.code).toBe("BUILD_TOOL_MISSING");
    expect(err.message).toContain("nvcc");
    expect(err.message).toContain("CUDA_HOME is not set");
    expect(err.message).toContain("CUDA toolkit");
    expect(err.message).toContain("CUDA_HOME=/usr/local/cuda");
    const withHome = thrown(() => checkCudaToolkit(lookup({ PATH: "/usr/bin", CUDA_HOME: "/opt/cuda" })));
    expect(withHome.message).toContain(`$CUDA_HOME/bin (${path.join("/opt/cuda", "bin")})`);
    expect(withHome.details).toMatchObject({ missing: "nvcc", cudaHome: "/opt/cuda" });
  });

  it("a CUDA build without the toolkit stops before cloning or configuring anything", async () => {
    const cache = tempDir("iteralign-cuda-cache-");
    const saved = process.env.CUDACXX;
    process.env.CUDACXX = path.join(cache, "no-such-nvcc");
    try {
      const err = await ensureLlamaBuild({ targets: ["iteralign-finetune"], gpu: "cuda", cacheDir: cache }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IterAlignError);
      expect((err as IterAlignError).code).toBe("BUILD_TOOL_MISSING");
      expect((err as Error).message).toContain("CUDACXX");
      expect(readdirSync(cache)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.CUDACXX;
      else process.env.CUDACXX = saved;
    }
  });
});

describe("npm run build:llama arguments", () => {
  it("builds llama-server and iteralign's programs for the CPU by default", () => {
    expect(parseBuildLlamaArgs([])).toEqual({ gpu: "cpu", targets: ["llama-server", "iteralign-scorer", "iteralign-generate", "iteralign-finetune"] });
    expect(parseBuildLlamaArgs(["iteralign-scorer"])).toEqual({ gpu: "cpu", targets: ["iteralign-scorer"] });
  });

  it("--cuda builds iteralign-finetune, or the programs named, for CUDA", () => {
    expect(parseBuildLlamaArgs(["--cuda"])).toEqual({ gpu: "cuda", targets: ["iteralign-finetune"] });
    expect(parseBuildLlamaArgs(["llama-server", "--cuda"])).toEqual({ gpu: "cuda", targets: ["llama-server"] });
  });

  it("rejects unknown options and programs", () => {
    expect(thrown(() => parseBuildLlamaArgs(["--gpu"])).message).toMatch(/unknown option '--gpu'.*--cuda/);
    expect(thrown(() => parseBuildLlamaArgs(["llama-cli"])).code).toBe("USAGE");
  });
});
