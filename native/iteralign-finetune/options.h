// Command-line options of iteralign-finetune.
#pragma once

#include <map>
#include <stdexcept>
#include <string>

// Bad command line: exit status 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// `--name value` pairs after the command.
using Flags = std::map<std::string, std::string>;

Flags parse_flags(int argc, char ** argv, int first);

// Removes and returns --name; `fallback` when absent (required when the fallback is empty).
std::string take(Flags & f, const std::string & name, const std::string & fallback = "");
int         take_int(Flags & f, const std::string & name, const std::string & fallback, int lo, int hi);
// Throws UsageError for an option nobody took.
void        no_leftovers(const Flags & f);

int         default_threads();
std::string format_number(double v);

struct TrainOptions {
    std::string model, data, out, schedule, out_type, work_dir;
    int         epochs = 0, ctx = 0, threads = 0;
    int         gpu_layers = 0;  // layers offloaded to a GPU (a CUDA build); -1: all, 0: none (CPU)
    double      lr = 0, warmup = 0;
    unsigned    seed = 0;
};

TrainOptions parse_train(Flags f);
