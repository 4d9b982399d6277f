#include "options.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

Flags parse_flags(int argc, char ** argv, int first) {
    Flags flags;
    for (int i = first; i < argc; i++) {
        const std::string flag = argv[i];
        if (flag.rfind("--", 0) != 0 || i + 1 >= argc) throw UsageError("expected --option value, got '" + flag + "'");
        flags[flag.substr(2)] = argv[++i];
    }
    return flags;
}

std::string take(Flags & f, const std::string & name, const std::string & fallback) {
    const auto it = f.find(name);
    if (it == f.end()) {
        if (fallback.empty()) throw UsageError("--" + name + " is required");
        return fallback;
    }
    std::string v = it->second;
    f.erase(it);
    return v;
}

namespace {

double take_number(Flags & f, const std::string & name, const std::string & fallback, double lo, double hi) {
    const std::string text = take(f, name, fallback);
    char *            end  = nullptr;
    const double      v    = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi) {
        throw UsageError("--" + name + " must be a number in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                         "], got '" + text + "'");
    }
    return v;
}

}  // namespace

int take_int(Flags & f, const std::string & name, const std::string & fallback, int lo, int hi) {
    const double v = take_number(f, name, fallback, lo, hi);
    if (v != std::floor(v)) throw UsageError("--" + name + " must be an integer");
    return static_cast<int>(v);
}

void no_leftovers(const Flags & f) {
    if (!f.empty()) throw UsageError("unknown option --" + f.begin()->first);
}

int default_threads() {
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::string format_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", v);
    return buf;
}

TrainOptions parse_train(Flags f) {
    TrainOptions o;
    o.model    = take(f, "model");
    o.data     = take(f, "data");
    o.out      = take(f, "out");
    o.epochs   = take_int(f, "epochs", "2", 1, 1000);
    o.lr       = take_number(f, "lr", "1e-5", 1e-12, 1e12);
    o.schedule = take(f, "schedule", "cosine");
    o.warmup   = take_number(f, "warmup", "0.03", 0, 0.9);
    o.ctx      = take_int(f, "ctx", "256", 8, 1 << 20);
    o.seed     = static_cast<unsigned>(take_int(f, "seed", "0", 0, 2147483647));
    o.threads  = take_int(f, "threads", std::to_string(default_threads()), 1, 1024);
    o.out_type = take(f, "out-type", "f32");
    o.gpu_layers = take_int(f, "gpu-layers", "0", -1, 1 << 20);
    o.work_dir = take(f, "work-dir", std::filesystem::path(o.out).parent_path().string() + "/.");
    no_leftovers(f);
    if (o.schedule != "constant" && o.schedule != "linear" && o.schedule != "cosine") {
        throw UsageError("--schedule must be constant, linear or cosine");
    }
    if (o.out_type != "f32" && o.out_type != "q8_0") throw UsageError("--out-type must be f32 or q8_0");
    return o;
}
