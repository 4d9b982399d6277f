// Loss masking for llama.cpp's training loop (see masked-loss.cpp for why it works this way).
#pragma once

#include "ggml.h"

#include <cstdint>
#include <string>
#include <vector>

// One training row per position of the (padded) context: the token the row must predict, and whether the row
// counts in the loss (an assistant-answer token) or is masked (prompt, padding).
struct MaskedRows {
    std::vector<int32_t> target;
    std::vector<uint8_t> keep;
    int                  n_keep = 0;
};

// What the hook saw during one optimizer step.
struct MaskedStep {
    int         forward_hits  = 0;  // cross-entropy nodes seen (must be 1)
    int         backward_hits = 0;  // cross-entropy gradient nodes masked (must be 1)
    double      nll_sum       = 0;  // sum of -log p(target) over the kept rows, from the step's forward pass
    std::string error;              // set when the graph did not look as expected; the step must not count
};

// The eval callback installed on llama.cpp's scheduler. Between steps the caller sets `rows` and resets `step`.
class MaskedLoss {
  public:
    MaskedRows rows;
    MaskedStep step;
    // Nodes the scheduler asked about: proves the callback is installed (checked after the warm-up decode).
    long long asked = 0;

    static bool eval_callback(ggml_tensor * t, bool ask, void * user_data);

  private:
    void on_forward(const ggml_tensor * loss_node);
    void on_backward(ggml_tensor * grad_logits);
};
