// iteralign-generate: text generation for decode groups, as a JSON-lines server.
//
// Why this program exists: node-llama-cpp samples every sequence's next token in its own asynchronous call that
// first copies the whole vocabulary (152k candidates for Qwen vocabularies) into a candidate array, and each token
// travels through JavaScript before the next batch can be decoded. With 16 sequences that work sits between two
// decodes at every step (~25% of a red-team stage). Here a decode group runs as llama-batched-bench runs: one batch
// per step holding one token of every live sequence, and greedy sampling reads each sequence's logits once, next
// to them, with the penalties applied to the handful of tokens already generated.
//
// Protocol (one JSON object per line):
//   startup  -> {"ready":true,"nVocab":V,"nCtx":C,"nSeq":S,"nBatch":B}      (nCtx: cells per sequence)
//   request  <- {"id":N,"prompts":[[ids],...],"prefix":P,"threads":T,"params":[{...},...]}
//     prompts: one per sequence of the group (at most nSeq); prefix: leading tokens every prompt shares, evaluated
//     once on the first sequence and copied to the others (0: none); threads: CPU threads for this group (optional);
//     params: one object per prompt, or a single one for all: maxTokens, temperature, topP, topK, seed,
//     frequencyPenalty, presencePenalty, stopTokens ([ids]), stopTexts ([strings]).
//   response -> {"id":N,"results":[{"tokens":[ids],"finish":"stop"|"length"}],"promptTokens":p,"evaluatedTokens":e,
//                "decodeMs":d,"sampleMs":s}
//            or {"id":N,"error":"message","kind":"input"|"decode"|"internal"}
// A generated token is returned unless it ends the answer: an end-of-generation token or one of stopTokens is left
// out; the token whose text completes one of stopTexts is kept (the caller cuts the text at the stop text).
// Bad input never ends the process; EOF on stdin does (exit status 0).

#include "iteralign-native.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

using iteralign::DecodeError;
using iteralign::InputError;
using iteralign::json;

constexpr const char * PROGRAM = "iteralign-generate";

iteralign::EngineOptions parse_args(int argc, char ** argv) {
    iteralign::EngineOptions o;
    for (int i = 1; i < argc; i++) {
        if (iteralign::parse_engine_flag(PROGRAM, o, argc, argv, i)) continue;
        std::fprintf(stderr, "%s: unknown option %s\n", PROGRAM, argv[i]);
        std::exit(2);
    }
    iteralign::check_engine_options(PROGRAM, "--model PATH [--lora ADAPTER.gguf]... [--ctx N] [--threads T] [--seqs S] [--batch B] [--kv-unified]", o, 1);
    return o;
}

// Largest value of a row (NaN never wins).
float largest(const float * x, int n) {
    int i = 0;
    float m = -INFINITY;
#if defined(__AVX2__)
    __m256 a = _mm256_set1_ps(-INFINITY);
    __m256 b = a;
    for (; i + 16 <= n; i += 16) {
        a = _mm256_max_ps(a, _mm256_loadu_ps(x + i));
        b = _mm256_max_ps(b, _mm256_loadu_ps(x + i + 8));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_max_ps(a, b));
    for (float v : lanes) m = v > m ? v : m;
#endif
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

// Index of the first largest value: the token llama.cpp's greedy sampler picks (ties go to the lowest id).
int first_argmax(const float * x, int n) {
    const float m = largest(x, n);
    int i = 0;
#if defined(__AVX2__)
    const __m256 mv = _mm256_set1_ps(m);
    for (; i + 8 <= n; i += 8) {
        const int hits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), mv, _CMP_EQ_OQ));
        if (hits != 0) return i + __builtin_ctz(static_cast<unsigned>(hits));
    }
#endif
    for (; i < n; i++) {
        if (x[i] == m) return i;
    }
    return 0;
}

struct Params {
    int max_tokens = 256;
    float temperature = 0.0f;
    float top_p = 1.0f;
    int top_k = 0;
    bool has_seed = false;
    uint32_t seed = 0;
    float frequency = 0.0f;
    float presence = 0.0f;
    std::vector<llama_token> stop_tokens;
    std::vector<std::string> stop_texts;
};

std::vector<llama_token> read_tokens(const json & value, const std::string & what, int n_vocab, bool allow_empty) {
    if (!value.is_array()) throw InputError(what + " must be an array of token ids");
    if (value.empty() && !allow_empty) throw InputError(what + " is empty");
    std::vector<llama_token> out;
    out.reserve(value.size());
    for (const auto & t : value) {
        if (!t.is_number_integer()) throw InputError(what + " holds a value that is not an integer token id");
        const long long id = t.get<long long>();
        if (id < 0 || id >= n_vocab) {
            throw InputError(what + " holds token id " + std::to_string(id) + ", outside the vocabulary [0, " +
                             std::to_string(n_vocab) + ")");
        }
        out.push_back(static_cast<llama_token>(id));
    }
    return out;
}

float read_float(const json & p, const char * key, float fallback, const std::string & where) {
    if (!p.contains(key) || p[key].is_null()) return fallback;
    if (!p[key].is_number()) throw InputError(where + "." + key + " must be a number");
    return p[key].get<float>();
}

Params read_params(const json & p, const std::string & where, int n_vocab) {
    if (!p.is_object()) throw InputError(where + " must be an object");
    Params out;
    if (p.contains("maxTokens")) {
        if (!p["maxTokens"].is_number_integer() || p["maxTokens"].get<long long>() < 1) {
            throw InputError(where + ".maxTokens must be a positive integer");
        }
        out.max_tokens = static_cast<int>(std::min<long long>(p["maxTokens"].get<long long>(), 1LL << 24));
    }
    out.temperature = read_float(p, "temperature", 0.0f, where);
    out.top_p = read_float(p, "topP", 1.0f, where);
    out.frequency = read_float(p, "frequencyPenalty", 0.0f, where);
    out.presence = read_float(p, "presencePenalty", 0.0f, where);
    if (out.temperature < 0) throw InputError(where + ".temperature must not be negative");
    if (p.contains("topK") && !p["topK"].is_null()) {
        if (!p["topK"].is_number_integer() || p["topK"].get<long long>() < 0) throw InputError(where + ".topK must be a non-negative integer");
        out.top_k = static_cast<int>(std::min<long long>(p["topK"].get<long long>(), n_vocab));
    }
    if (p.contains("seed") && !p["seed"].is_null()) {
        if (!p["seed"].is_number_integer()) throw InputError(where + ".seed must be an integer");
        out.has_seed = true;
        out.seed = static_cast<uint32_t>(p["seed"].get<long long>() & 0xffffffffLL);
    }
    if (p.contains("stopTokens")) out.stop_tokens = read_tokens(p["stopTokens"], where + ".stopTokens", n_vocab, true);
    if (p.contains("stopTexts")) {
        if (!p["stopTexts"].is_array()) throw InputError(where + ".stopTexts must be an array of strings");
        for (const auto & s : p["stopTexts"]) {
            if (!s.is_string()) throw InputError(where + ".stopTexts must be an array of strings");
            if (!s.get<std::string>().empty()) out.stop_texts.push_back(s.get<std::string>());
        }
    }
    return out;
}

struct Sequence {
    std::vector<llama_token> prompt;
    Params params;
    std::vector<llama_token> tokens;
    std::string text;
    std::unordered_map<llama_token, int> counts;
    std::mt19937 rng;
    bool done = false;
    std::string finish = "length";
    int pos = 0;     // next position in the sequence
    int logit = -1;  // index of this sequence's logits in the last batch
};

class Generator {
  public:
    Generator(llama_context * ctx, const llama_vocab * vocab) :
        ctx_(ctx),
        vocab_(vocab),
        mem_(llama_get_memory(ctx)),
        n_vocab_(llama_vocab_n_tokens(vocab)),
        n_ctx_(static_cast<int>(llama_n_ctx_seq(ctx))),
        n_batch_(static_cast<int>(llama_n_batch(ctx))),
        n_seq_(static_cast<int>(llama_n_seq_max(ctx))),
        batch_(llama_batch_init(n_batch_, 0, 1)) {}

    ~Generator() { llama_batch_free(batch_); }

    json ready() const {
        return {{"ready", true}, {"nVocab", n_vocab_}, {"nCtx", n_ctx_}, {"nSeq", n_seq_}, {"nBatch", n_batch_}};
    }

    json handle(const json & req) {
        if (!req.is_object()) throw InputError("a request must be a JSON object");
        if (!req.contains("prompts") || !req["prompts"].is_array() || req["prompts"].empty()) {
            throw InputError("prompts must be a non-empty array of token id arrays");
        }
        const json & prompts = req["prompts"];
        if (static_cast<int>(prompts.size()) > n_seq_) {
            throw InputError("a group of " + std::to_string(prompts.size()) + " prompts needs more than the " +
                             std::to_string(n_seq_) + " sequences of this generator");
        }
        if (req.contains("threads") && !req["threads"].is_null()) {
            if (!req["threads"].is_number_integer() || req["threads"].get<long long>() < 1) throw InputError("threads must be a positive integer");
            const int t = static_cast<int>(std::min<long long>(req["threads"].get<long long>(), 1024));
            llama_set_n_threads(ctx_, t, t);
        }
        const json params = req.contains("params") ? req["params"] : json::array({json::object()});
        if (!params.is_array() || (params.size() != 1 && params.size() != prompts.size())) {
            throw InputError("params must be an array of one object, or of one object per prompt");
        }
        std::vector<Sequence> seqs(prompts.size());
        for (size_t i = 0; i < prompts.size(); i++) {
            const std::string where = "prompts[" + std::to_string(i) + "]";
            Sequence & s = seqs[i];
            s.prompt = read_tokens(prompts[i], where, n_vocab_, false);
            s.params = read_params(params[params.size() == 1 ? 0 : i], "params[" + std::to_string(params.size() == 1 ? 0 : i) + "]", n_vocab_);
            if (static_cast<int>(s.prompt.size()) >= n_ctx_) {
                throw InputError(where + " has " + std::to_string(s.prompt.size()) + " tokens; a sequence holds " +
                                 std::to_string(n_ctx_) + " with the answer");
            }
            if (s.params.has_seed) s.rng.seed(s.params.seed);
            else s.rng.seed(std::random_device{}());
        }
        int prefix = 0;
        if (req.contains("prefix") && !req["prefix"].is_null()) {
            if (!req["prefix"].is_number_integer() || req["prefix"].get<long long>() < 0) throw InputError("prefix must be a non-negative integer");
            prefix = static_cast<int>(req["prefix"].get<long long>());
            for (const Sequence & s : seqs) {
                // Every sequence keeps at least one prompt token of its own: its first answer token comes from its logits.
                if (prefix >= static_cast<int>(s.prompt.size())) throw InputError("prefix must be shorter than every prompt");
                if (!std::equal(s.prompt.begin(), s.prompt.begin() + prefix, seqs[0].prompt.begin())) {
                    throw InputError("prefix: the prompts do not share their first " + std::to_string(prefix) + " tokens");
                }
            }
        }
        decode_ms_ = 0;
        sample_ms_ = 0;
        llama_memory_clear(mem_, false);
        long long evaluated = 0;
        long long prompt_tokens = 0;
        for (const Sequence & s : seqs) prompt_tokens += static_cast<long long>(s.prompt.size());
        try {
            evaluated = prefill(seqs, prefix);
            generate(seqs);
        } catch (...) {
            llama_memory_clear(mem_, false);
            throw;
        }
        llama_memory_clear(mem_, false);
        json results = json::array();
        for (const Sequence & s : seqs) results.push_back({{"tokens", s.tokens}, {"finish", s.finish}});
        return {{"results", results},
                {"promptTokens", prompt_tokens},
                {"evaluatedTokens", evaluated},
                {"decodeMs", decode_ms_},
                {"sampleMs", sample_ms_}};
    }

  private:
    llama_context *       ctx_;
    const llama_vocab *   vocab_;
    llama_memory_t        mem_;
    int                   n_vocab_;
    int                   n_ctx_;
    int                   n_batch_;
    int                   n_seq_;
    llama_batch           batch_;
    std::vector<float>    scratch_;
    std::vector<llama_token_data> candidates_;
    double                decode_ms_ = 0;
    double                sample_ms_ = 0;

    void add(llama_token token, int pos, int seq, bool output) {
        const int i          = batch_.n_tokens++;
        batch_.token[i]      = token;
        batch_.pos[i]        = pos;
        batch_.n_seq_id[i]   = 1;
        batch_.seq_id[i][0]  = seq;
        batch_.logits[i]     = output ? 1 : 0;
    }

    void decode() {
        if (batch_.n_tokens == 0) return;
        const auto start = std::chrono::steady_clock::now();
        const int rc = llama_decode(ctx_, batch_);
        decode_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        batch_.n_tokens = 0;
        if (rc != 0) throw DecodeError("llama_decode failed with status " + std::to_string(rc));
    }

    // Evaluates the prompts: the shared prefix once on sequence 0, copied to the others, then every sequence's
    // own tokens, in batches of at most n_batch; the logits of each prompt's last token are kept. Returns the
    // prompt tokens evaluated.
    long long prefill(std::vector<Sequence> & seqs, int prefix) {
        long long evaluated = 0;
        int start = 0;
        if (prefix > 0 && seqs.size() > 1) {
            for (int p = 0; p < prefix; p++) {
                add(seqs[0].prompt[p], p, 0, false);
                if (batch_.n_tokens == n_batch_) decode();
            }
            decode();
            for (size_t k = 1; k < seqs.size(); k++) llama_memory_seq_cp(mem_, 0, static_cast<llama_seq_id>(k), -1, -1);
            evaluated += prefix;
            start = prefix;
        }
        // Sequence by sequence, as node-llama-cpp fills its batches; a batch may end in the middle of a prompt.
        std::vector<int> pending;  // sequences whose last prompt token is in the current batch
        for (size_t k = 0; k < seqs.size(); k++) {
            Sequence & s = seqs[k];
            const int n = static_cast<int>(s.prompt.size());
            for (int p = start; p < n; p++) {
                const bool last = p == n - 1;
                if (last) {
                    s.logit = batch_.n_tokens;
                    pending.push_back(static_cast<int>(k));
                }
                add(s.prompt[p], p, static_cast<int>(k), last);
                evaluated++;
                if (batch_.n_tokens == n_batch_) {
                    decode();
                    sample_all(seqs, pending);
                    pending.clear();
                }
            }
            s.pos = n;
        }
        decode();
        sample_all(seqs, pending);
        return evaluated;
    }

    // One batch per step with the last token of every live sequence, until each has finished.
    void generate(std::vector<Sequence> & seqs) {
        for (;;) {
            std::vector<int> live;
            for (size_t k = 0; k < seqs.size(); k++) {
                Sequence & s = seqs[k];
                if (s.done) continue;
                if (s.pos >= n_ctx_) {
                    s.done = true;  // the sequence is full: the answer ends here, as at maxTokens
                    continue;
                }
                s.logit = batch_.n_tokens;
                add(s.tokens.back(), s.pos++, static_cast<int>(k), true);
                live.push_back(static_cast<int>(k));
            }
            if (live.empty()) return;
            decode();
            sample_all(seqs, live);
        }
    }

    void sample_all(std::vector<Sequence> & seqs, const std::vector<int> & which) {
        if (which.empty()) return;
        const auto start = std::chrono::steady_clock::now();
        for (int k : which) accept(seqs[k], sample(seqs[k]));
        sample_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }

    llama_token sample(Sequence & s) {
        float * logits = llama_get_logits_ith(ctx_, s.logit);
        if (logits == nullptr) throw DecodeError("no logits for a sequence's last token");
        // Penalties on the tokens generated so far, as llama.cpp's penalties sampler computes them in float:
        // logit - (count * frequency + presence). Written into the logits row and put back afterwards.
        std::vector<std::pair<llama_token, float>> saved;
        if (s.params.frequency != 0.0f || s.params.presence != 0.0f) {
            saved.reserve(s.counts.size());
            for (const auto & [token, count] : s.counts) {
                saved.emplace_back(token, logits[token]);
                logits[token] -= static_cast<float>(count) * s.params.frequency + s.params.presence;
            }
        }
        llama_token chosen;
        if (s.params.temperature <= 0.0f) chosen = first_argmax(logits, n_vocab_);
        else chosen = sample_random(s, logits);
        for (const auto & [token, value] : saved) logits[token] = value;
        return chosen;
    }

    // Temperature sampling, in the order of node-llama-cpp's sampler chain: top-k, then top-p (on the probabilities
    // at temperature 1), then the temperature, then a draw from the sequence's own random stream (seeded by `seed`).
    // Only the head of the distribution is sorted: the top k, or for top-p alone a head that grows until it holds p.
    llama_token sample_random(Sequence & s, const float * logits) {
        candidates_.resize(n_vocab_);
        for (int i = 0; i < n_vocab_; i++) candidates_[i] = {i, logits[i], 0.0f};
        auto by_logit = [](const llama_token_data & a, const llama_token_data & b) {
            return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
        };
        const float max = largest(logits, n_vocab_);
        size_t n = candidates_.size();
        size_t sorted = 0;
        if (s.params.top_k > 0 && static_cast<size_t>(s.params.top_k) < n) {
            std::partial_sort(candidates_.begin(), candidates_.begin() + s.params.top_k, candidates_.end(), by_logit);
            n = sorted = static_cast<size_t>(s.params.top_k);
        }
        if (s.params.top_p < 1.0f) {
            double total = 0;
            for (size_t i = 0; i < n; i++) total += std::exp(static_cast<double>(candidates_[i].logit - max));
            size_t head = sorted > 0 ? sorted : std::min<size_t>(64, n);
            for (;;) {
                if (head > sorted) {
                    std::partial_sort(candidates_.begin() + sorted, candidates_.begin() + head, candidates_.begin() + n, by_logit);
                    sorted = head;
                }
                double kept = 0;
                size_t keep = 0;
                for (size_t i = 0; i < sorted && keep == 0; i++) {
                    kept += std::exp(static_cast<double>(candidates_[i].logit - max)) / total;
                    if (kept >= s.params.top_p) keep = i + 1;
                }
                if (keep > 0 || sorted == n) {
                    n = keep > 0 ? keep : n;
                    break;
                }
                head = std::min(n, head * 4);
            }
        }
        std::vector<double> weights(n);
        for (size_t i = 0; i < n; i++) weights[i] = std::exp(static_cast<double>(candidates_[i].logit - max) / s.params.temperature);
        std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
        return candidates_[pick(s.rng)].id;
    }

    void accept(Sequence & s, llama_token token) {
        const Params & p = s.params;
        if (llama_vocab_is_eog(vocab_, token) || std::find(p.stop_tokens.begin(), p.stop_tokens.end(), token) != p.stop_tokens.end()) {
            s.done = true;
            s.finish = "stop";
            return;
        }
        s.tokens.push_back(token);
        s.counts[token]++;
        char buf[256];
        int n = llama_token_to_piece(vocab_, token, buf, sizeof buf, 0, false);
        if (n < 0) {
            std::string big(static_cast<size_t>(-n), '\0');
            n = llama_token_to_piece(vocab_, token, big.data(), static_cast<int32_t>(big.size()), 0, false);
            s.text.append(big.data(), static_cast<size_t>(std::max(n, 0)));
        } else {
            s.text.append(buf, static_cast<size_t>(n));
        }
        for (const std::string & stop : p.stop_texts) {
            // Only a stop text ending in the new piece can be new.
            const size_t from = s.text.size() > stop.size() + static_cast<size_t>(n) ? s.text.size() - stop.size() - static_cast<size_t>(n) : 0;
            if (s.text.find(stop, from) != std::string::npos) {
                s.done = true;
                s.finish = "stop";
                return;
            }
        }
        if (static_cast<int>(s.tokens.size()) >= p.max_tokens) s.done = true;
    }
};

}  // namespace

int main(int argc, char ** argv) {
    const iteralign::EngineOptions opts = parse_args(argc, argv);
    iteralign::Engine engine;
    if (!iteralign::load_engine(PROGRAM, opts, engine)) return 1;
    Generator generator(engine.ctx, llama_model_get_vocab(engine.model));
    return iteralign::serve(generator.ready(), [&](const json & req) { return generator.handle(req); });
}
