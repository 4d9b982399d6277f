// iteralign-finetune: supervised fine-tuning of a GGUF model with the loss on assistant tokens only.
//
// Built inside llama.cpp's tree (iteralign copies this folder to tools/iteralign-finetune), on llama.cpp's
// training API: llama_opt_init / llama_opt_epoch with AdamW, one example per optimizer step. Prompt tokens
// are masked out of the loss by masked-loss.cpp. Full fine-tuning needs F32 weights: other files are
// converted first (llama.cpp's quantizer, every metadata key kept), and the result can be converted back.
//
//   iteralign-finetune train --model IN.gguf --data examples.jsonl --out OUT.gguf [--epochs 2] [--lr 1e-5]
//       [--schedule constant|linear|cosine] [--warmup 0.03] [--ctx 256] [--seed 0] [--threads N]
//       [--out-type f32|q8_0] [--work-dir DIR] [--gpu-layers 0]
//   (--gpu-layers: layers to offload to the GPU of a CUDA build, -1 for all; default 0, all on the CPU)
//   iteralign-finetune convert --in IN.gguf --out OUT.gguf --type f32|f16|q8_0 [--threads N]
//
// stdout carries one JSON object per line: {"event":"convert"|"start"|"step"|"epoch"|"done"|"error",...}.
// Exit status: 0 done, 1 internal error, 2 bad usage or input, 3 diverged (non-finite loss or weights),
// 4 out of memory.

#include "gguf-weights.h"
#include "iteralign-native.h"
#include "masked-loss.h"
#include "options.h"
#include "training-data.h"

#include "ggml-opt.h"
#include "llama.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <new>
#include <random>
#include <string>
#include <vector>

using json = nlohmann::json;

namespace {

constexpr int EXIT_INTERNAL = 1;
constexpr int EXIT_USAGE    = 2;
constexpr int EXIT_DIVERGED = 3;
constexpr int EXIT_MEMORY   = 4;

struct MemoryError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Events are JSON lines on stdout; llama.cpp's warnings and errors go to stderr (native/common, shared with the
// scorer and the generator).
using iteralign::log_to_stderr;
using iteralign::write_line;

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Learning rate per optimizer step: linear warm-up, then constant, linear decay or cosine decay. Every step's
// rate is positive (ggml's AdamW asserts it), the last one included.
struct Schedule {
    double      peak   = 1e-5;
    std::string kind   = "cosine";
    long long   total  = 1;
    long long   warmup = 0;
    long long   step   = 0;  // the step about to run, 0-based

    double at(long long s) const {
        if (s < warmup) return peak * static_cast<double>(s + 1) / static_cast<double>(warmup + 1);
        const long long decay_steps = std::max(1LL, total - warmup);
        const double    progress    = static_cast<double>(s - warmup) / static_cast<double>(decay_steps);
        if (kind == "linear") return peak * (1.0 - progress);
        if (kind == "cosine") return peak * 0.5 * (1.0 + std::cos(M_PI * progress));
        return peak;
    }

    static ggml_opt_optimizer_params params(void * user_data) {
        const auto *              self = static_cast<const Schedule *>(user_data);
        ggml_opt_optimizer_params p    = ggml_opt_get_default_optimizer_params(nullptr);
        p.adamw.alpha                  = static_cast<float>(std::max(self->at(self->step), 1e-12));
        p.adamw.wd                     = 0.0f;  // as Hugging Face's default for SFT
        return p;
    }
};

// Tensors llama_opt_init marks trainable, recorded so the trained values can be written back by name.
struct Trainable {
    std::vector<const ggml_tensor *> tensors;
    long long                        parameters = 0;

    static bool filter(const ggml_tensor * t, void * user_data) {
        // A tied output head (no output.weight in the file) is the token embedding itself: llama.cpp would train
        // the output-side copy only, and writing it back would also move the input embeddings, which training
        // never saw. It stays frozen, so the saved model is exactly the trained one.
        if (std::string(ggml_get_name(t)) == "token_embd.weight") return false;
        auto * self = static_cast<Trainable *>(user_data);
        self->tensors.push_back(t);
        self->parameters += ggml_nelements(t);
        return true;
    }
};

struct Cleanup {
    std::vector<std::string> files;
    ~Cleanup() {
        for (const auto & f : files) {
            std::error_code ignored;
            std::filesystem::remove(f, ignored);
        }
    }
};

// The training window (--ctx) is the number of positions one step computes. llama.cpp rounds a context's KV
// cache up to a multiple of 256 and sizes its datasets' datapoints by that, but its training loop runs over
// llama_opt_params.n_ctx_train positions of each datapoint: setting that to the window (with n_batch = n_ubatch
// = window) trains on exactly the window, so a 60-token example costs 64 positions, not 256.
llama_context * make_context(llama_model * model, const TrainOptions & o, MaskedLoss & mask) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx                = static_cast<uint32_t>(o.ctx);
    // One window is one ubatch is one optimizer step (no gradient accumulation across positions).
    cp.n_batch              = static_cast<uint32_t>(o.ctx);
    cp.n_ubatch             = static_cast<uint32_t>(o.ctx);
    cp.n_seq_max            = 1;
    cp.n_threads            = o.threads;
    cp.n_threads_batch      = o.threads;
    // The backward pass has no F16 OUT_PROD and no flash-attention gradient.
    cp.type_k               = GGML_TYPE_F32;
    cp.type_v               = GGML_TYPE_F32;
    cp.flash_attn_type      = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.cb_eval              = MaskedLoss::eval_callback;
    cp.cb_eval_user_data    = &mask;
    cp.no_perf              = true;
    // Room for the training graph in llama.cpp's scheduler: see llama-patches.json (read when the context is made).
    setenv("ITERALIGN_LLAMA_GRAPH_NODES_FACTOR", "4", 1);
    llama_context * ctx     = llama_init_from_model(model, cp);
    if (ctx == nullptr) {
        throw MemoryError("could not allocate a training context of " + std::to_string(o.ctx) + " tokens");
    }
    if (llama_n_ctx(ctx) < cp.n_ctx || llama_n_batch(ctx) != cp.n_ctx || llama_n_ubatch(ctx) != cp.n_ctx) {
        llama_free(ctx);
        throw std::runtime_error("llama.cpp changed the training window (n_ctx/n_batch/n_ubatch)");
    }
    return ctx;
}

// llama.cpp installs cb_eval on its scheduler when it builds a decode graph; training graphs then run on the
// same scheduler. One decoded token installs it (and proves it is installed).
void install_mask_hook(llama_context * ctx, MaskedLoss & mask, llama_token token) {
    llama_batch batch = llama_batch_get_one(&token, 1);
    if (llama_decode(ctx, batch) != 0) throw std::runtime_error("the warm-up decode failed");
    llama_memory_clear(llama_get_memory(ctx), true);
    if (mask.asked == 0) throw std::runtime_error("llama.cpp did not install the loss-mask callback");
}

int train(const TrainOptions & o) {
    Cleanup cleanup;
    std::string base = o.model;
    const std::vector<std::string> types = non_f32_types(o.model);
    if (!types.empty()) {
        const auto t0 = std::chrono::steady_clock::now();
        base          = (std::filesystem::path(o.work_dir) / "finetune-input-f32.gguf.tmp").string();
        cleanup.files.push_back(base);
        convert_model(o.model, base, "f32", o.threads);
        write_line({{"event", "convert"}, {"from", types}, {"to", "f32"}, {"seconds", seconds_since(t0)}});
    }

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers       = o.gpu_layers;
    // The optimizer writes the weights in place: they must live in ordinary, writable buffers (host memory, or
    // the GPU's for offloaded layers; gguf-weights.cpp reads them back through the backend).
    mp.load_mode          = LLAMA_LOAD_MODE_NONE;
    llama_model * model   = llama_model_load_from_file(base.c_str(), mp);
    if (model == nullptr) throw std::runtime_error("cannot load model " + base);
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int           n_vocab = llama_vocab_n_tokens(vocab);
    const llama_token   eos     = llama_vocab_eos(vocab);
    const llama_token   pad     = eos >= 0 ? eos : 0;

    std::vector<Example> examples = read_examples(o.data, n_vocab, o.ctx);
    MaskedLoss           mask;
    llama_context *      ctx = make_context(model, o, mask);
    install_mask_hook(ctx, mask, pad);

    Schedule schedule;
    schedule.peak   = o.lr;
    schedule.kind   = o.schedule;
    schedule.total  = static_cast<long long>(o.epochs) * static_cast<long long>(examples.size());
    schedule.warmup = static_cast<long long>(std::ceil(o.warmup * static_cast<double>(schedule.total)));
    Trainable trainable;
    llama_opt_params op = {
        /*n_ctx_train     =*/static_cast<uint32_t>(o.ctx),
        /*param_filter    =*/Trainable::filter,
        /*param_filter_ud =*/&trainable,
        /*get_opt_pars    =*/Schedule::params,
        /*get_opt_pars_ud =*/&schedule,
        /*optimizer_type  =*/GGML_OPT_OPTIMIZER_TYPE_ADAMW,
    };
    llama_opt_init(ctx, model, op);

    long long answer_per_epoch = 0;
    for (const auto & ex : examples) answer_per_epoch += ex.answer_tokens;
    write_line({{"event", "start"},
                {"examples", examples.size()},
                {"totalSteps", schedule.total},
                {"epochs", o.epochs},
                {"ctx", o.ctx},
                {"answerTokensPerEpoch", answer_per_epoch},
                {"modelParameters", llama_model_n_params(model)},
                {"trainableParameters", trainable.parameters}});

    // Datapoints have llama_n_ctx positions (llama_opt_epoch copies that many); only the first o.ctx train.
    const int64_t      n_datapoint  = llama_n_ctx(ctx);
    ggml_opt_dataset_t dataset      = ggml_opt_dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, n_datapoint, n_datapoint, 1, 1);
    ggml_opt_result_t  result_train = ggml_opt_result_init();
    ggml_opt_result_t  result_eval  = ggml_opt_result_init();
    auto *             data         = static_cast<int32_t *>(ggml_opt_dataset_data(dataset)->data);
    auto *             labels       = static_cast<int32_t *>(ggml_opt_dataset_labels(dataset)->data);

    std::mt19937_64          rng(o.seed);
    std::vector<size_t>      order(examples.size());
    const auto               t_train   = std::chrono::steady_clock::now();
    long long                tokens    = 0;
    long long                trained   = 0;
    int                      status    = 0;
    std::string              failure;
    for (int epoch = 0; epoch < o.epochs && status == 0; epoch++) {
        for (size_t i = 0; i < order.size(); i++) order[i] = i;
        std::shuffle(order.begin(), order.end(), rng);
        double    epoch_nll = 0;
        long long epoch_tok = 0;
        for (size_t k = 0; k < order.size() && status == 0; k++) {
            const Example & ex = examples[order[k]];
            mask.rows          = rows_for(ex, o.ctx, pad);
            mask.step          = MaskedStep{};
            std::fill(data, data + n_datapoint, pad);
            std::fill(labels, labels + n_datapoint, pad);
            std::copy(ex.tokens.begin(), ex.tokens.end(), data);
            std::copy(mask.rows.target.begin(), mask.rows.target.end(), labels);
            ggml_opt_result_reset(result_train);
            llama_opt_epoch(ctx, dataset, result_train, result_eval, /*idata_split =*/1, nullptr, nullptr);
            if (mask.step.forward_hits != 1 || mask.step.backward_hits != 1 || !mask.step.error.empty()) {
                failure = "the loss mask was not applied: " +
                          (mask.step.error.empty() ? std::string("llama.cpp's training graph changed") : mask.step.error);
                status  = EXIT_INTERNAL;
                break;
            }
            const double loss = mask.step.nll_sum / mask.rows.n_keep;
            tokens += static_cast<long long>(ex.tokens.size());
            trained += mask.rows.n_keep;
            epoch_nll += mask.step.nll_sum;
            epoch_tok += mask.rows.n_keep;
            const double elapsed = seconds_since(t_train);
            write_line({{"event", "step"},
                        {"step", schedule.step + 1},
                        {"totalSteps", schedule.total},
                        {"epoch", epoch + 1},
                        {"example", order[k]},
                        {"loss", std::isfinite(loss) ? json(loss) : json(nullptr)},
                        {"lr", schedule.at(schedule.step)},
                        {"tokens", ex.tokens.size()},
                        {"answerTokens", mask.rows.n_keep},
                        {"tokensPerSecond", static_cast<double>(tokens) / std::max(elapsed, 1e-9)},
                        {"seconds", elapsed}});
            schedule.step++;
            if (!std::isfinite(loss)) {
                failure = "the training loss became " + std::string(std::isnan(loss) ? "NaN" : "infinite") + " at step " +
                          std::to_string(schedule.step) + " (is the learning rate " + format_number(o.lr) + " too high?)";
                status  = EXIT_DIVERGED;
            }
        }
        if (status == 0) {
            write_line({{"event", "epoch"}, {"epoch", epoch + 1}, {"loss", epoch_nll / epoch_tok}, {"trainedTokens", epoch_tok}});
        }
    }
    ggml_opt_result_free(result_train);
    ggml_opt_result_free(result_eval);
    ggml_opt_dataset_free(dataset);

    const double train_seconds = seconds_since(t_train);
    if (status == 0) {
        const bool        requantize = o.out_type != "f32";
        const std::string f32_out    = requantize ? o.out + ".f32.tmp" : o.out;
        if (requantize) cleanup.files.push_back(f32_out);
        try {
            write_trained_model(base, f32_out, trainable.tensors);
        } catch (const DivergedError & e) {
            failure = e.what();
            status  = EXIT_DIVERGED;
        }
        llama_free(ctx);
        llama_model_free(model);
        ctx   = nullptr;
        model = nullptr;
        if (status == 0 && requantize) convert_model(f32_out, o.out, o.out_type, o.threads);
    }
    if (ctx != nullptr) llama_free(ctx);
    if (model != nullptr) llama_model_free(model);
    if (status != 0) {
        write_line({{"event", "error"}, {"kind", status == EXIT_DIVERGED ? "diverged" : "internal"}, {"message", failure}});
        return status;
    }
    write_line({{"event", "done"},
                {"out", o.out},
                {"steps", schedule.total},
                {"trainedTokens", trained},
                {"tokens", tokens},
                {"tokensPerSecond", static_cast<double>(tokens) / std::max(train_seconds, 1e-9)},
                {"seconds", train_seconds}});
    return 0;
}

int convert(Flags f) {
    const std::string in      = take(f, "in");
    const std::string out     = take(f, "out");
    const std::string type    = take(f, "type");
    const int         threads = take_int(f, "threads", std::to_string(default_threads()), 1, 1024);
    no_leftovers(f);
    const auto t0 = std::chrono::steady_clock::now();
    convert_model(in, out, type, threads);
    write_line({{"event", "done"}, {"out", out}, {"seconds", seconds_since(t0)}});
    return 0;
}

int fail(const char * kind, const std::string & message, int status) {
    write_line({{"event", "error"}, {"kind", kind}, {"message", message}});
    std::fprintf(stderr, "iteralign-finetune: %s\n", message.c_str());
    return status;
}

}  // namespace

int main(int argc, char ** argv) {
    llama_log_set(log_to_stderr, nullptr);
    const std::string command = argc > 1 ? argv[1] : "";
    int               status  = 0;
    llama_backend_init();
    try {
        if (command == "train") status = train(parse_train(parse_flags(argc, argv, 2)));
        else if (command == "convert") status = convert(parse_flags(argc, argv, 2));
        else throw UsageError("usage: iteralign-finetune train|convert --option value ... (see the source header)");
    } catch (const UsageError & e) {
        status = fail("usage", e.what(), EXIT_USAGE);
    } catch (const InputError & e) {
        status = fail("input", e.what(), EXIT_USAGE);
    } catch (const DivergedError & e) {
        status = fail("diverged", e.what(), EXIT_DIVERGED);
    } catch (const MemoryError & e) {
        status = fail("memory", e.what(), EXIT_MEMORY);
    } catch (const std::bad_alloc &) {
        status = fail("memory", "out of memory", EXIT_MEMORY);
    } catch (const std::exception & e) {
        status = fail("internal", e.what(), EXIT_INTERNAL);
    }
    llama_backend_free();
    return status;
}
