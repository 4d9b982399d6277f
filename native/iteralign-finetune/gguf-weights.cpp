// Why the trained model is written by patching a copy of the input file instead of llama_model_save_to_file:
// the saver rebuilds the metadata from what llama.cpp keeps in memory, and that loses keys the next iteration
// needs (tokenizer.chat_template is not written at all) and records the training window as the model's
// context_length (llama_opt_init overwrites n_ctx_train). Only the trained tensors' values change, so the
// input file's header (every key, every tensor's name, shape, type and offset) is exactly right for the output.

#include "gguf-weights.h"

#include "ggml-backend.h"
#include "gguf.h"
#include "llama.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

namespace {

struct GgufCloser {
    void operator()(gguf_context * g) const { gguf_free(g); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufCloser>;

GgufPtr open_gguf(const std::string & path) {
    gguf_init_params params = {/*no_alloc =*/true, /*ctx =*/nullptr};
    GgufPtr          g(gguf_init_from_file(path.c_str(), params));
    if (!g) throw std::runtime_error("cannot read GGUF file " + path);
    return g;
}

}  // namespace

std::vector<std::string> non_f32_types(const std::string & path) {
    const GgufPtr         g = open_gguf(path);
    std::set<std::string> types;
    for (int64_t i = 0; i < gguf_get_n_tensors(g.get()); i++) {
        const ggml_type t = gguf_get_tensor_type(g.get(), i);
        if (t != GGML_TYPE_F32) types.insert(ggml_type_name(t));
    }
    return {types.begin(), types.end()};
}

void convert_model(const std::string & in, const std::string & out, const std::string & type, int threads) {
    llama_model_quantize_params params = llama_model_quantize_default_params();
    if (type == "f32") params.ftype = LLAMA_FTYPE_ALL_F32;
    else if (type == "f16") params.ftype = LLAMA_FTYPE_MOSTLY_F16;
    else if (type == "q8_0") params.ftype = LLAMA_FTYPE_MOSTLY_Q8_0;
    else throw std::runtime_error("unknown model type '" + type + "' (f32, f16 or q8_0)");
    params.nthread = threads;
    // Converting a Q8_0 file to F32 (or back) goes through F32 values: allowed explicitly.
    params.allow_requantize = true;
    if (llama_model_quantize(in.c_str(), out.c_str(), &params) != 0) {
        throw std::runtime_error("llama.cpp could not convert " + in + " to " + type);
    }
}

void write_trained_model(const std::string & base, const std::string & out, const std::vector<const ggml_tensor *> & trained) {
    const GgufPtr g = open_gguf(base);
    std::filesystem::copy_file(base, out, std::filesystem::copy_options::overwrite_existing);
    try {
        std::fstream file(out, std::ios::in | std::ios::out | std::ios::binary);
        if (!file) throw std::runtime_error("cannot open " + out + " for writing");
        const size_t          data_offset = gguf_get_data_offset(g.get());
        std::set<std::string> written;
        std::vector<char>     bytes;
        for (const ggml_tensor * t : trained) {
            const std::string name = ggml_get_name(t);
            const int64_t     id   = gguf_find_tensor(g.get(), name.c_str());
            if (id < 0) throw std::runtime_error("trained tensor " + name + " is not in " + base);
            if (!written.insert(name).second) throw std::runtime_error("two trained tensors are named " + name);
            if (gguf_get_tensor_type(g.get(), id) != t->type || gguf_get_tensor_size(g.get(), id) != ggml_nbytes(t)) {
                throw std::runtime_error("trained tensor " + name + " differs in type or size from the file's");
            }
            bytes.resize(ggml_nbytes(t));
            ggml_backend_tensor_get(t, bytes.data(), 0, bytes.size());
            if (t->type == GGML_TYPE_F32) {
                const auto * v = reinterpret_cast<const float *>(bytes.data());
                for (size_t i = 0; i < bytes.size() / sizeof(float); i++) {
                    if (!std::isfinite(v[i])) throw DivergedError("training made weights of " + name + " non-finite");
                }
            }
            file.seekp(static_cast<std::streamoff>(data_offset + gguf_get_tensor_offset(g.get(), id)));
            file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        }
        file.flush();
        if (!file) throw std::runtime_error("error writing " + out);
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(out, ignored);
        throw;
    }
}
