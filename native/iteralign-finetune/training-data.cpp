#include "training-data.h"

#include <nlohmann/json.hpp>

#include <fstream>

using json = nlohmann::json;

namespace {

std::string where(const std::string & path, size_t line) {
    return path + ":" + std::to_string(line) + ": ";
}

Example parse_example(const json & j, const std::string & at, int n_vocab, int max_tokens) {
    if (!j.is_object() || !j.contains("tokens") || !j.contains("mask") || !j["tokens"].is_array() ||
        !j["mask"].is_array()) {
        throw InputError(at + "expected an object with arrays 'tokens' and 'mask'");
    }
    const json & tokens = j["tokens"];
    const json & mask   = j["mask"];
    if (tokens.size() != mask.size()) throw InputError(at + "'tokens' and 'mask' differ in length");
    if (tokens.size() < 2) throw InputError(at + "an example needs at least two tokens");
    if (tokens.size() > static_cast<size_t>(max_tokens)) {
        throw InputError(at + "the example has " + std::to_string(tokens.size()) + " tokens, more than the context (" +
                         std::to_string(max_tokens) + ")");
    }
    Example ex;
    for (size_t i = 0; i < tokens.size(); i++) {
        if (!tokens[i].is_number_integer()) throw InputError(at + "a token id is not an integer");
        const long long id = tokens[i].get<long long>();
        if (id < 0 || id >= n_vocab) {
            throw InputError(at + "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(n_vocab) + ")");
        }
        if (!mask[i].is_number_integer() || (mask[i].get<int>() != 0 && mask[i].get<int>() != 1)) {
            throw InputError(at + "mask values must be 0 or 1");
        }
        ex.tokens.push_back(static_cast<int32_t>(id));
        ex.mask.push_back(static_cast<uint8_t>(mask[i].get<int>()));
        // The first token is never predicted (nothing precedes it), so it cannot carry loss.
        if (i > 0 && ex.mask.back() == 1) ex.answer_tokens++;
    }
    if (ex.answer_tokens == 0) throw InputError(at + "the example has no answer tokens (mask 1) to train on");
    return ex;
}

}  // namespace

std::vector<Example> read_examples(const std::string & path, int n_vocab, int max_tokens) {
    std::ifstream in(path);
    if (!in) throw InputError("cannot read the training file " + path);
    std::vector<Example> out;
    std::string          line;
    size_t               number = 0;
    while (std::getline(in, line)) {
        number++;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        json j;
        try {
            j = json::parse(line);
        } catch (const json::exception & e) {
            throw InputError(where(path, number) + "not JSON: " + e.what());
        }
        out.push_back(parse_example(j, where(path, number), n_vocab, max_tokens));
    }
    if (in.bad()) throw InputError("error reading " + path);
    if (out.empty()) throw InputError(path + " holds no examples");
    return out;
}

MaskedRows rows_for(const Example & ex, int n_ctx, int32_t pad) {
    MaskedRows rows;
    rows.target.assign(static_cast<size_t>(n_ctx), pad);
    rows.keep.assign(static_cast<size_t>(n_ctx), 0);
    for (size_t r = 0; r + 1 < ex.tokens.size(); r++) {
        rows.target[r] = ex.tokens[r + 1];
        rows.keep[r]   = ex.mask[r + 1];
        rows.n_keep += ex.mask[r + 1];
    }
    return rows;
}
