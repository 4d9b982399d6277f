// GGUF file work around training: type checks, conversion, and writing the trained weights.
#pragma once

#include "ggml.h"

#include <stdexcept>
#include <string>
#include <vector>

// Training produced non-finite weights: exit status 3, like a non-finite loss.
struct DivergedError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Names of the tensor types in `path` other than F32 (empty: the file is all F32 and can be trained as is).
std::vector<std::string> non_f32_types(const std::string & path);

// Converts a model file to another tensor type with llama.cpp's quantizer, keeping every metadata key
// (chat template, context length, tokenizer). `type`: "f32", "f16" or "q8_0". Throws on failure.
void convert_model(const std::string & in, const std::string & out, const std::string & type, int threads);

// Writes the trained model: a copy of `base` (the F32 file training loaded) with the bytes of every trained
// tensor replaced by its current values. Throws DivergedError (and removes `out`) when a weight is not finite.
void write_trained_model(const std::string & base, const std::string & out, const std::vector<const ggml_tensor *> & trained);
