// The llama-server process helper lives in the library (src/testing) so benches use it too.
export { startLlamaServer, type LlamaServerOptions, type RunningLlamaServer } from "../../src/testing/llama-server.js";
