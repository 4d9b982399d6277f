// The training file: one tokenized example per line, as iteralign's TypeScript side writes it.
#pragma once

#include "masked-loss.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

// The file is wrong (bad JSON, token outside the vocabulary, too long): exit status 2.
struct InputError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One example: the token ids of prompt + answer + end-of-turn, and per token 1 when it is part of the answer
// (the loss covers predicting it) or 0 when it is prompt (context only).
struct Example {
    std::vector<int32_t> tokens;
    std::vector<uint8_t> mask;
    int                  answer_tokens = 0;  // tokens with mask 1 after the first position: what the loss covers
};

// Reads `{"tokens":[ids],"mask":[0|1,...]}` lines. Every token must be in [0, n_vocab) and every example at most
// `max_tokens` long; an example must have at least one answer token after its first position.
std::vector<Example> read_examples(const std::string & path, int n_vocab, int max_tokens);

// The training rows of an example padded to `n_ctx` positions: row r predicts token r + 1 and counts when that
// token is an answer token. Padding rows predict `pad` and never count.
MaskedRows rows_for(const Example & ex, int n_ctx, int32_t pad);
