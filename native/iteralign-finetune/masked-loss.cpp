// Loss on assistant tokens only, inside llama.cpp's own training loop.
//
// Why a scheduler callback: llama_opt_epoch turns every position's label into a one-hot row and minimizes the
// mean cross-entropy over all rows; the public API has no way to leave a position out. An all-zero label row
// is not a mask either: ggml's cross-entropy backward computes softmax(logits) - labels for every row, so a
// zero row still pushes the model (towards lowering its own most likely tokens). What is exact is to edit the
// gradient of the logits: ggml_opt builds the backward graph with one GGML_OP_CROSS_ENTROPY_LOSS_BACK node,
// whose output is d(loss)/d(logits), one row per position. The scheduler's eval callback (a public
// llama_context_params field, cb_eval) lets us observe that node after it is computed and before anything
// consumes it; zeroing the masked rows there removes those positions from every gradient upstream, and
// scaling the kept rows by n_rows / n_keep turns llama.cpp's mean over all rows into the mean over the answer
// tokens. The same callback reads the forward logits at the GGML_OP_CROSS_ENTROPY_LOSS node to report the
// masked loss (llama.cpp's own loss figure averages over every row).
//
// The hook checks itself: each step must see exactly one forward and one backward node of the expected shape,
// and every kept row's one-hot label must sit on the token we expect; otherwise the step is reported as an
// error and the trainer stops, so a change inside llama.cpp can never silently train on prompt tokens.

#include "masked-loss.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace {

// Reads row `r` of a 2-D F32 tensor, from host memory directly or through the backend.
const float * read_row(const ggml_tensor * t, int64_t r, std::vector<float> & scratch) {
    const size_t offset = static_cast<size_t>(r) * t->nb[1];
    if (t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer)) {
        return reinterpret_cast<const float *>(static_cast<const char *>(t->data) + offset);
    }
    scratch.resize(static_cast<size_t>(t->ne[0]));
    ggml_backend_tensor_get(t, scratch.data(), offset, scratch.size() * sizeof(float));
    return scratch.data();
}

bool is_f32_matrix(const ggml_tensor * t) {
    return t != nullptr && t->type == GGML_TYPE_F32 && t->ne[2] == 1 && t->ne[3] == 1 && t->nb[0] == sizeof(float);
}

}  // namespace

bool MaskedLoss::eval_callback(ggml_tensor * t, bool ask, void * user_data) {
    auto * self = static_cast<MaskedLoss *>(user_data);
    if (ask) {
        self->asked++;
        return t->op == GGML_OP_CROSS_ENTROPY_LOSS || t->op == GGML_OP_CROSS_ENTROPY_LOSS_BACK;
    }
    if (t->op == GGML_OP_CROSS_ENTROPY_LOSS) self->on_forward(t);
    else if (t->op == GGML_OP_CROSS_ENTROPY_LOSS_BACK) self->on_backward(t);
    // Always continue the graph: a failed check is reported after the step, and the trainer exits then.
    return true;
}

void MaskedLoss::on_forward(const ggml_tensor * loss_node) {
    step.forward_hits++;
    const ggml_tensor * logits = loss_node->src[0];
    const ggml_tensor * labels = loss_node->src[1];
    const auto          n_rows = static_cast<int64_t>(rows.target.size());
    if (!is_f32_matrix(logits) || !is_f32_matrix(labels) || logits->ne[1] != n_rows || labels->ne[1] != n_rows ||
        labels->ne[0] != logits->ne[0]) {
        step.error = "the cross-entropy node does not have one F32 row per context position";
        return;
    }
    const int64_t      n_vocab = logits->ne[0];
    std::vector<float> scratch;
    std::vector<float> label_scratch;
    double             sum = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        if (!rows.keep[r]) continue;
        const int32_t target = rows.target[r];
        if (target < 0 || target >= n_vocab) {
            step.error = "a target token is outside the vocabulary";
            return;
        }
        // llama.cpp wrote the one-hot labels from the dataset: they must agree with our rows.
        if (read_row(labels, r, label_scratch)[target] != 1.0f) {
            step.error = "llama.cpp's labels do not line up with the loss mask (row " + std::to_string(r) + ")";
            return;
        }
        const float * row = read_row(logits, r, scratch);
        float         max = row[0];
        for (int64_t i = 1; i < n_vocab; i++) max = std::max(max, row[i]);
        // The sum runs in double: over 150k terms a float accumulator loses precision the loss curve would show.
        double z = 0;
        for (int64_t i = 0; i < n_vocab; i++) z += std::exp(static_cast<double>(row[i]) - max);
        sum += std::log(z) + max - static_cast<double>(row[target]);
    }
    step.nll_sum += sum;
}

void MaskedLoss::on_backward(ggml_tensor * grad) {
    step.backward_hits++;
    const auto n_rows = static_cast<int64_t>(rows.target.size());
    if (!is_f32_matrix(grad) || grad->ne[1] != n_rows || rows.n_keep <= 0) {
        step.error = "the cross-entropy gradient does not have one F32 row per context position";
        return;
    }
    const int64_t n_vocab = grad->ne[0];
    const float   scale   = static_cast<float>(n_rows) / static_cast<float>(rows.n_keep);
    const bool    host    = grad->buffer == nullptr || ggml_backend_buffer_is_host(grad->buffer);
    std::vector<float> scratch(host ? 0 : static_cast<size_t>(n_vocab));
    for (int64_t r = 0; r < n_rows; r++) {
        const size_t offset = static_cast<size_t>(r) * grad->nb[1];
        float *      row    = host ? reinterpret_cast<float *>(static_cast<char *>(grad->data) + offset) : scratch.data();
        if (!rows.keep[r]) {
            std::memset(row, 0, static_cast<size_t>(n_vocab) * sizeof(float));
        } else {
            if (!host) ggml_backend_tensor_get(grad, row, offset, static_cast<size_t>(n_vocab) * sizeof(float));
            for (int64_t i = 0; i < n_vocab; i++) row[i] *= scale;
        }
        if (!host) ggml_backend_tensor_set(grad, row, offset, static_cast<size_t>(n_vocab) * sizeof(float));
    }
}
