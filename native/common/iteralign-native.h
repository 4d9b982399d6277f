// What iteralign's JSON-lines programs (iteralign-scorer, iteralign-generate) share: the model and context options,
// loading the model with its LoRA adapters into a context set up as iteralign's node-llama-cpp contexts are, the
// error kinds of the protocol, and the serve loop (one JSON request per stdin line, one JSON answer per stdout line).
// iteralign copies this folder next to each program's source when it builds them (src/native/llama-build.ts).
#pragma once

#include "llama.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace iteralign {

using json = nlohmann::json;

// The request is wrong (bad token id, too long, malformed): the caller's fault, the process keeps serving.
struct InputError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// llama_decode failed: reported to the caller; the next request starts from cleared memory.
struct DecodeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// stdout carries the protocol, so llama.cpp's own logging must go to stderr, and only warnings and errors: the
// parent keeps the tail of stderr to explain failures, and load-time info lines would drown it.
inline void log_to_stderr(ggml_log_level level, const char * text, void * /*user_data*/) {
    static ggml_log_level last = GGML_LOG_LEVEL_NONE;
    // CONT lines continue the previous message and take its level.
    const ggml_log_level effective = level == GGML_LOG_LEVEL_CONT ? last : level;
    if (level != GGML_LOG_LEVEL_CONT) last = level;
    if (effective == GGML_LOG_LEVEL_WARN || effective == GGML_LOG_LEVEL_ERROR) {
        std::fputs(text, stderr);
        std::fflush(stderr);
    }
}

inline int positive_int(const char * program, const char * flag, const char * value) {
    char * end = nullptr;
    const long v = std::strtol(value, &end, 10);
    if (end == value || *end != '\0' || v <= 0 || v > (1L << 24)) {
        std::fprintf(stderr, "%s: %s needs a positive integer, got '%s'\n", program, flag, value);
        std::exit(2);
    }
    return static_cast<int>(v);
}

struct EngineOptions {
    std::string model;
    int ctx     = 2048;  // cells per sequence, as node-llama-cpp's contextSize
    int threads = 1;
    int seqs    = 4;
    int batch   = 512;
    // Off by default so the numbers match node-llama-cpp's (non-unified) contexts: see load_engine.
    bool kv_unified = false;
    // LoRA adapters (GGUF) applied on top of the model, each at scale 1: a base model plus a trained adapter.
    std::vector<std::string> lora;
};

// Reads the shared flags: argv[i] (and its value, advancing i). False when argv[i] is not one of them.
inline bool parse_engine_flag(const char * program, EngineOptions & o, int argc, char ** argv, int & i) {
    const std::string flag = argv[i];
    if (flag == "--kv-unified") {
        o.kv_unified = true;
        return true;
    }
    if (flag != "--model" && flag != "--lora" && flag != "--ctx" && flag != "--threads" && flag != "--seqs" && flag != "--batch") {
        return false;
    }
    if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: %s needs a value\n", program, flag.c_str());
        std::exit(2);
    }
    const char * value = argv[++i];
    if (flag == "--model") o.model = value;
    else if (flag == "--lora") o.lora.emplace_back(value);
    else if (flag == "--ctx") o.ctx = positive_int(program, "--ctx", value);
    else if (flag == "--threads") o.threads = positive_int(program, "--threads", value);
    else if (flag == "--seqs") o.seqs = positive_int(program, "--seqs", value);
    else o.batch = positive_int(program, "--batch", value);
    return true;
}

// Checks the shared options after parsing: a model, and sequences between min_seqs and llama.cpp's cap.
inline void check_engine_options(const char * program, const char * usage, EngineOptions & o, int min_seqs) {
    if (o.model.empty()) {
        std::fprintf(stderr, "usage: %s %s\n", program, usage);
        std::exit(2);
    }
    o.seqs = std::clamp(o.seqs, min_seqs, static_cast<int>(llama_max_parallel_sequences()));
    if (static_cast<long long>(o.ctx) * o.seqs > (1LL << 31)) {
        std::fprintf(stderr, "%s: --ctx %d with --seqs %d is too large\n", program, o.ctx, o.seqs);
        std::exit(2);
    }
}

struct Engine {
    llama_model *   model = nullptr;
    llama_context * ctx   = nullptr;

    ~Engine() {
        if (ctx != nullptr) llama_free(ctx);
        if (model != nullptr) llama_model_free(model);
        llama_backend_free();
    }
};

// Loads the model on the CPU into a context as iteralign's node-llama-cpp contexts are made, with the adapters
// applied. False (after a message on stderr) when something cannot be loaded.
inline bool load_engine(const char * program, const EngineOptions & o, Engine & engine) {
    llama_log_set(log_to_stderr, nullptr);
    llama_backend_init();
    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers       = 0;
    engine.model               = llama_model_load_from_file(o.model.c_str(), mparams);
    if (engine.model == nullptr) {
        std::fprintf(stderr, "%s: cannot load model %s\n", program, o.model.c_str());
        return false;
    }
    llama_context_params cparams = llama_context_default_params();
    // --ctx is per sequence: without a unified buffer each sequence gets its own n_ctx cells.
    cparams.n_ctx           = static_cast<uint32_t>(o.kv_unified ? o.ctx : o.ctx * o.seqs);
    cparams.n_batch         = static_cast<uint32_t>(o.batch);
    cparams.n_ubatch        = static_cast<uint32_t>(o.batch);
    cparams.n_seq_max       = static_cast<uint32_t>(o.seqs);
    cparams.n_threads       = o.threads;
    cparams.n_threads_batch = o.threads;
    // Flash attention off, as in iteralign's node-llama-cpp contexts: on CPU it accumulates in f16 and the
    // numbers would drift ~1e-4 away from the engine path's.
    cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    // Separate KV buffers per sequence (node-llama-cpp's setting) by default: each sequence then sees its tokens at
    // the same cell indices as in the engine path, and the attention sums run in the same order. A unified buffer
    // (--kv-unified) is a little faster but interleaves sequences' cells, which moves log-likelihoods of Q8_0
    // models by up to ~2e-3 (activation quantization amplifies the reordered float sums).
    cparams.kv_unified      = o.kv_unified;
    cparams.no_perf         = true;
    engine.ctx              = llama_init_from_model(engine.model, cparams);
    if (engine.ctx == nullptr) {
        std::fprintf(stderr, "%s: cannot create a context (ctx %d, seqs %d, batch %d)\n", program, o.ctx, o.seqs, o.batch);
        return false;
    }
    std::vector<llama_adapter_lora *> adapters;
    for (const std::string & file : o.lora) {
        llama_adapter_lora * adapter = llama_adapter_lora_init(engine.model, file.c_str());
        if (adapter == nullptr) {
            std::fprintf(stderr, "%s: cannot load LoRA adapter %s for model %s\n", program, file.c_str(), o.model.c_str());
            return false;
        }
        adapters.push_back(adapter);
    }
    if (!adapters.empty()) {
        std::vector<float> scales(adapters.size(), 1.0f);
        if (llama_set_adapters_lora(engine.ctx, adapters.data(), adapters.size(), scales.data()) != 0) {
            std::fprintf(stderr, "%s: cannot apply the LoRA adapters\n", program);
            return false;
        }
    }
    return true;
}

inline void write_line(const json & j) {
    // replace: an invalid UTF-8 byte in a message must not turn into an exception while reporting an error.
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << '\n' << std::flush;
}

// Writes the ready line, then answers each request line with handle(request) or an error of its kind, the request's
// id added. Bad input never ends the process; EOF on stdin does. Returns the exit status.
template <typename Handle> int serve(const json & ready, Handle handle) {
    write_line(ready);
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        json id = nullptr;
        json out;
        try {
            const json req = json::parse(line);
            if (req.is_object() && req.contains("id")) id = req["id"];
            out = handle(req);
        } catch (const DecodeError & e) {
            out = {{"error", e.what()}, {"kind", "decode"}};
        } catch (const InputError & e) {
            out = {{"error", e.what()}, {"kind", "input"}};
        } catch (const json::exception & e) {
            out = {{"error", std::string("malformed request: ") + e.what()}, {"kind", "input"}};
        } catch (const std::exception & e) {
            out = {{"error", e.what()}, {"kind", "internal"}};
        }
        out["id"] = id;
        write_line(out);
    }
    return std::cin.bad() ? 1 : 0;
}

}  // namespace iteralign
