// iteralign-scorer: log-likelihood scoring of continuations of a shared context, as a JSON-lines server.
//
// Why this program exists: node-llama-cpp exposes no raw logits, only a full-vocabulary probability map per
// position (a JS Map of 150k entries for Qwen vocabularies, ~100 ms per scored token). Scoring needs one
// number per position: the log-softmax of the token that follows. Computing it here, next to the logits,
// costs one pass over the vocabulary in C++.
//
// Protocol (one JSON object per line):
//   startup  -> {"ready":true,"nVocab":V,"nCtx":C,"nSeq":S,"nBatch":B}
//   request  <- {"id":N,"context":[ids],"continuations":[[ids],...],"fresh":false}
//   response -> {"id":N,"scores":[{"logprob":x,"tokenCount":n,"isGreedy":b}],"promptTokens":p,"reusedTokens":r,
//                "readMs":t}
//   promptTokens: the context plus every continuation token but its last (what the request covers);
//   reusedTokens: leading context tokens whose keys and values were kept from the previous request (see handle;
//   "fresh": true evaluates everything); readMs: milliseconds spent computing log-softmax from logits.
//            or {"id":N,"error":"message","kind":"input"|"decode"|"internal"}
// Bad input never ends the process; EOF on stdin does (exit status 0).

#include "iteralign-native.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

using iteralign::DecodeError;
using iteralign::InputError;
using iteralign::json;

constexpr const char * PROGRAM = "iteralign-scorer";

struct Options : iteralign::EngineOptions {
    // Contexts are decoded in chunks that start at multiples of this many tokens (see Scorer::handle).
    int chunk = 32;
};

Options parse_args(int argc, char ** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        if (iteralign::parse_engine_flag(PROGRAM, o, argc, argv, i)) continue;
        const std::string flag = argv[i];
        if (flag == "--chunk" && i + 1 < argc) {
            o.chunk = iteralign::positive_int(PROGRAM, "--chunk", argv[++i]);
            continue;
        }
        if (flag == "--chunk") {
            std::fprintf(stderr, "%s: --chunk needs a value\n", PROGRAM);
            std::exit(2);
        }
        std::fprintf(stderr, "%s: unknown option %s\n", PROGRAM, flag.c_str());
        std::exit(2);
    }
    // One sequence holds the context; continuations need at least one more.
    iteralign::check_engine_options(PROGRAM, "--model PATH [--lora ADAPTER.gguf]... [--ctx N] [--threads T] [--seqs S] [--batch B] [--chunk C] [--kv-unified]", o, 2);
    o.chunk = std::min(o.chunk, o.batch);
    return o;
}

struct TokenScore {
    double logprob;
    bool   greedy;
};

// exp(x) for x <= 0 in single precision, without branches or libm calls: x = n ln2 + r with |r| <= ln2/2,
// exp(r) by a degree-6 polynomial (relative error ~2e-7, a float's own precision), 2^n put into the exponent
// bits. Below -87 the result is 0, as a float exp underflows there anyway; such terms are below 1e-38 of the
// largest one. The AVX2 path below computes the same formula eight lanes at a time.
inline float exp_nonpositive(float x) {
    x = std::max(x, -87.0f);
    // Round to nearest by adding and subtracting 1.5 * 2^23 (exact for |x log2 e| < 2^22; needs no SSE4.1).
    const float n  = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r  = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-06f;
    float       p  = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// Terms per block of the sum of exponentials: each block is summed in float lanes and added to a double total.
// Over 150k terms a single float accumulator would lose ~1e-4 relative precision, the size of the differences
// the tests look for.
constexpr int SUM_BLOCK = 1024;

#if defined(__AVX2__)
inline __m256 exp_nonpositive8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n =
        _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693145751953125f)));
    r        = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(1.42860682030941723e-06f)));
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p        = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 120.0f));
    p        = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 24.0f));
    p        = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 6.0f));
    p        = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(0.5f));
    p        = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    p        = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

float row_max(const float * x, int n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY);
    __m256 m1 = m0;
    int    i  = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
    float m = lanes[0];
    for (int k = 1; k < 8; k++) m = std::max(m, lanes[k]);
    for (; i < n; i++) m = std::max(m, x[i]);
    return m;
}

double row_sum_exp(const float * x, int n, float max) {
    const __m256 mv  = _mm256_set1_ps(max);
    double       sum = 0.0;
    for (int start = 0; start < n; start += SUM_BLOCK) {
        const int end = std::min(n, start + SUM_BLOCK);
        __m256    a0  = _mm256_setzero_ps();
        __m256    a1  = a0;
        int       j   = start;
        for (; j + 16 <= end; j += 16) {
            a0 = _mm256_add_ps(a0, exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv)));
            a1 = _mm256_add_ps(a1, exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mv)));
        }
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, _mm256_add_ps(a0, a1));
        double block = 0.0;
        for (int k = 0; k < 8; k++) block += lanes[k];
        for (; j < end; j++) block += exp_nonpositive(x[j] - max);
        sum += block;
    }
    return sum;
}
#else
float row_max(const float * x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = std::max(m, x[i]);
    return m;
}

double row_sum_exp(const float * x, int n, float max) {
    double sum = 0.0;
    for (int start = 0; start < n; start += SUM_BLOCK) {
        const int end   = std::min(n, start + SUM_BLOCK);
        float     lanes[8] = {};
        int       j     = start;
        for (; j + 8 <= end; j += 8) {
            for (int k = 0; k < 8; k++) lanes[k] += exp_nonpositive(x[j + k] - max);
        }
        double block = 0.0;
        for (int k = 0; k < 8; k++) block += lanes[k];
        for (; j < end; j++) block += exp_nonpositive(x[j] - max);
        sum += block;
    }
    return sum;
}
#endif

// One logit row's normalizer, computed once however many tokens are scored against the row:
// log p(token) = logit[token] - max - log(sum_i exp(logit_i - max)).
class RowScorer {
  public:
    RowScorer(const float * logits, int n_vocab) : logits_(logits) {
        max_      = row_max(logits, n_vocab);
        log_norm_ = static_cast<double>(max_) + std::log(row_sum_exp(logits, n_vocab, max_));
    }

    TokenScore score(llama_token token) const {
        const float v = logits_[token];
        return {static_cast<double>(v) - log_norm_, v == max_ && first_max_is(token)};
    }

  private:
    const float * logits_;
    float         max_;
    double        log_norm_;

    // Greedy means the token is the argmax, ties going to the lowest id (as a sampler's argmax does).
    bool first_max_is(llama_token token) const {
        for (int i = 0; i < token; i++) {
            if (logits_[i] == max_) return false;
        }
        return true;
    }
};

std::vector<llama_token> read_tokens(const json & value, const std::string & what, int n_vocab) {
    if (!value.is_array()) throw InputError(what + " must be an array of token ids");
    if (value.empty()) throw InputError(what + " is empty");
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

class Scorer {
  public:
    Scorer(llama_context * ctx, const llama_vocab * vocab, bool unified, int chunk) :
        ctx_(ctx),
        mem_(llama_get_memory(ctx)),
        n_vocab_(llama_vocab_n_tokens(vocab)),
        // The limit for one sequence: context plus one continuation must fit in it.
        n_ctx_(static_cast<int>(llama_n_ctx_seq(ctx))),
        unified_(unified),
        n_batch_(static_cast<int>(llama_n_batch(ctx))),
        chunk_(chunk),
        n_seq_(static_cast<int>(llama_n_seq_max(ctx))),
        batch_(llama_batch_init(n_batch_, 0, 1)) {}

    ~Scorer() { llama_batch_free(batch_); }

    json ready() const {
        return {{"ready", true}, {"nVocab", n_vocab_}, {"nCtx", n_ctx_}, {"nSeq", n_seq_}, {"nBatch", n_batch_}, {"chunk", chunk_}};
    }

    json handle(const json & req) {
        if (!req.is_object()) throw InputError("a request must be a JSON object");
        if (!req.contains("context")) throw InputError("the request has no context");
        if (!req.contains("continuations") || !req["continuations"].is_array()) {
            throw InputError("the request has no continuations array");
        }
        const std::vector<llama_token> context = read_tokens(req["context"], "context", n_vocab_);
        std::vector<std::vector<llama_token>> conts;
        for (size_t i = 0; i < req["continuations"].size(); i++) {
            conts.push_back(read_tokens(req["continuations"][i], "continuation " + std::to_string(i), n_vocab_));
        }
        size_t longest = 0;
        for (const auto & c : conts) longest = std::max(longest, c.size());
        // Same limit as the engine path: the context plus the whole longest continuation must fit.
        if (context.size() + longest > static_cast<size_t>(n_ctx_)) {
            throw InputError("context (" + std::to_string(context.size()) + " tokens) plus the longest continuation (" +
                             std::to_string(longest) + ") exceed the context size " + std::to_string(n_ctx_));
        }

        bool fresh = false;
        if (req.contains("fresh")) {
            if (!req["fresh"].is_boolean()) throw InputError("fresh must be true or false");
            fresh = req["fresh"].get<bool>();
        }

        // Prefix reuse: sequence 0 keeps the previous request's context. The part the new context shares with it
        // (a benchmark's few-shot primer, a chat template's system prompt) is not evaluated again.
        // Scores must not depend on what was scored before, and llama.cpp's numerics depend on the batch a token
        // was decoded in (a one-token batch takes another kernel than a 32-token one). So contexts are always
        // decoded in the same chunks, [0, C), [C, 2C), ..., the last one ending at the context's end, and only
        // whole chunks are reused: a reused cell was computed in exactly the batch a fresh evaluation would use,
        // on the same cells before it, and lands in the same cell (the cells freed after the shared part are the
        // first free ones). Scores are therefore bit-identical to a fresh evaluation (tested). A unified KV buffer
        // interleaves continuation cells with the context's, so there every request starts empty, as does a
        // request with "fresh": true.
        size_t reuse = 0;
        if (!fresh && !unified_) {
            const size_t chunk = static_cast<size_t>(chunk_);
            while (reuse < cached_.size() && reuse < context.size() && cached_[reuse] == context[reuse]) reuse++;
            // Whole chunks of both contexts only; the context's last token is always decoded (its logits score
            // every continuation's first token).
            reuse = std::min({reuse, cached_.size() / chunk * chunk, (context.size() - 1) / chunk * chunk});
        }
        // Nothing of sequence 0 is trusted until this request has decoded its context.
        cached_.clear();
        for (int seq = 1; seq < n_seq_; seq++) llama_memory_seq_rm(mem_, seq, -1, -1);
        if (reuse == 0) llama_memory_clear(mem_, false);
        else if (!llama_memory_seq_rm(mem_, 0, static_cast<llama_pos>(reuse), -1)) {
            llama_memory_clear(mem_, false);
            reuse = 0;
        }
        read_ms_ = 0.0;
        std::vector<double> logprob;
        std::vector<bool>   greedy;
        for (const TokenScore & s : decode_context(context, conts, reuse)) {
            logprob.push_back(s.logprob);
            greedy.push_back(s.greedy);
        }
        cached_ = context;
        long long prompt_tokens = static_cast<long long>(context.size());
        for (const auto & group : make_groups(context.size(), conts)) {
            prompt_tokens += score_group(context.size(), conts, group, logprob, greedy);
        }

        json scores = json::array();
        for (size_t i = 0; i < conts.size(); i++) {
            if (!std::isfinite(logprob[i])) throw DecodeError("the model produced a non-finite log-probability");
            scores.push_back({{"logprob", logprob[i]}, {"tokenCount", conts[i].size()}, {"isGreedy", greedy[i]}});
        }
        return {{"scores", scores}, {"promptTokens", prompt_tokens}, {"reusedTokens", reuse}, {"readMs", read_ms_}};
    }

  private:
    llama_context * ctx_;
    llama_memory_t  mem_;
    int             n_vocab_;
    int             n_ctx_;
    bool            unified_;
    int             n_batch_;
    int             chunk_;
    int             n_seq_;
    llama_batch     batch_;
    double          read_ms_ = 0.0;
    // The context whose keys and values sequence 0 holds (empty when unknown, e.g. after a failed decode).
    std::vector<llama_token> cached_;

    // A row's normalizer, with the time it took added to read_ms_.
    RowScorer read_row(const float * logits) {
        const auto start = std::chrono::steady_clock::now();
        RowScorer row(logits, n_vocab_);
        read_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        return row;
    }

    void batch_add(llama_token token, llama_pos pos, llama_seq_id seq, bool output) {
        const int i          = batch_.n_tokens++;
        batch_.token[i]      = token;
        batch_.pos[i]        = pos;
        batch_.n_seq_id[i]   = 1;
        batch_.seq_id[i][0]  = seq;
        batch_.logits[i]     = output ? 1 : 0;
    }

    void decode_batch() {
        const int32_t rc = llama_decode(ctx_, batch_);
        if (rc != 0) {
            llama_memory_clear(mem_, false);
            cached_.clear();
            throw DecodeError("llama_decode failed with status " + std::to_string(rc) +
                              (rc == 1 ? " (no room in the KV cache)" : ""));
        }
    }

    // Decodes the context from position `reuse` (a multiple of the chunk size; the cells before it hold the
    // shared prefix) on, in sequence 0, in chunks of the chunk size. Logits are requested only at its last
    // position: that distribution scores every continuation's first token, and the other positions' logits
    // would only cost memory and copying. Returns each continuation's first-token score, read before any
    // later decode overwrites the logits buffer.
    std::vector<TokenScore> decode_context(const std::vector<llama_token> & context,
                                           const std::vector<std::vector<llama_token>> & conts, size_t reuse) {
        const int n = static_cast<int>(context.size());
        for (int start = static_cast<int>(reuse); start < n; start += chunk_) {
            const int end  = std::min(n, start + chunk_);
            batch_.n_tokens = 0;
            for (int p = start; p < end; p++) batch_add(context[p], p, 0, p == n - 1);
            decode_batch();
        }
        const float * logits = llama_get_logits_ith(ctx_, batch_.n_tokens - 1);
        if (logits == nullptr) throw DecodeError("no logits for the context's last token");
        const RowScorer row = read_row(logits);
        std::vector<TokenScore> out;
        out.reserve(conts.size());
        for (const auto & c : conts) out.push_back(row.score(c[0]));
        return out;
    }

    // Continuations longer than one token, grouped so that a group fits the spare sequences (1..S-1; sequence 0
    // keeps the context) and, with a unified KV buffer, the cells left after the context (the copies share the
    // context's cells, but each continuation's own tokens need cells of their own). Without a unified buffer
    // every sequence has n_ctx cells of its own, which the request check already guarantees are enough.
    std::vector<std::vector<size_t>> make_groups(size_t context_len,
                                                 const std::vector<std::vector<llama_token>> & conts) const {
        std::vector<std::vector<size_t>> groups;
        std::vector<size_t> current;
        size_t cells = context_len;
        for (size_t i = 0; i < conts.size(); i++) {
            const size_t extra = conts[i].size() - 1;
            if (extra == 0) continue;
            const bool full = static_cast<int>(current.size()) >= n_seq_ - 1 ||
                              (unified_ && cells + extra > static_cast<size_t>(n_ctx_));
            if (!current.empty() && full) {
                groups.push_back(current);
                current.clear();
                cells = context_len;
            }
            current.push_back(i);
            cells += extra;
        }
        if (!current.empty()) groups.push_back(current);
        return groups;
    }

    // Scores one group: sequence 0's KV (the context) is copied to sequences 1..k (a buffer copy, or a cell tag
    // with a unified buffer: either is far cheaper than evaluating the context again), and every continuation
    // token but the last goes into one batch across those sequences with logits on. llama.cpp runs it in a few
    // ubatches (separate buffers need equal token counts per sequence in a ubatch), not one per continuation.
    // Returns the number of tokens decoded.
    long long score_group(size_t context_len, const std::vector<std::vector<llama_token>> & conts,
                          const std::vector<size_t> & group, std::vector<double> & logprob, std::vector<bool> & greedy) {
        struct Entry {
            size_t      cont;
            size_t      index;  // position inside the continuation of the token being fed
            llama_seq_id seq;
        };
        std::vector<Entry> entries;
        for (size_t k = 0; k < group.size(); k++) {
            const auto seq = static_cast<llama_seq_id>(k + 1);
            llama_memory_seq_cp(mem_, 0, seq, -1, -1);
            const auto & c = conts[group[k]];
            for (size_t j = 0; j + 1 < c.size(); j++) entries.push_back({group[k], j, seq});
        }
        for (size_t start = 0; start < entries.size(); start += static_cast<size_t>(n_batch_)) {
            const size_t end = std::min(entries.size(), start + static_cast<size_t>(n_batch_));
            batch_.n_tokens  = 0;
            for (size_t e = start; e < end; e++) {
                const Entry & en = entries[e];
                batch_add(conts[en.cont][en.index], static_cast<llama_pos>(context_len + en.index), en.seq, true);
            }
            decode_batch();
            for (size_t e = start; e < end; e++) {
                const Entry & en     = entries[e];
                const float * logits = llama_get_logits_ith(ctx_, static_cast<int32_t>(e - start));
                if (logits == nullptr) throw DecodeError("no logits for a continuation token");
                // The logits after token j predict token j + 1.
                const TokenScore s = read_row(logits).score(conts[en.cont][en.index + 1]);
                logprob[en.cont] += s.logprob;
                greedy[en.cont]  = greedy[en.cont] && s.greedy;
            }
        }
        // Free the copies' cells (the context stays in sequence 0) so the next group has room.
        for (size_t k = 0; k < group.size(); k++) llama_memory_seq_rm(mem_, static_cast<llama_seq_id>(k + 1), -1, -1);
        return static_cast<long long>(entries.size());
    }
};

}  // namespace

int main(int argc, char ** argv) {
    const Options opts = parse_args(argc, argv);
    iteralign::Engine engine;
    if (!iteralign::load_engine(PROGRAM, opts, engine)) return 1;
    Scorer scorer(engine.ctx, llama_model_get_vocab(engine.model), opts.kv_unified, opts.chunk);
    return iteralign::serve(scorer.ready(), [&](const json & req) { return scorer.handle(req); });
}
