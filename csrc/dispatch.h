// Run-time choice of the instruction set and the thread count.
//
// Shared state of the C++ core, all of it here: the active ISA table (an atomic pointer to
// a constant table) and the thread count (an atomic int). A kernel reads each once when it
// starts, so changing either while other threads run kernels is safe: running calls finish
// on the settings they started with.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "isa.h"

namespace lenet_fast {

// The table in use. Never null.
const KernelTable& active_kernels();

// Names of the ISAs compiled into this build, and of those this CPU can run.
std::vector<std::string> compiled_isas();
std::vector<std::string> available_isas();

// Select "scalar", "avx2" or "auto" (the best this CPU runs). Throws std::invalid_argument
// with a message naming the choices for an unknown name or one this CPU or build lacks.
void set_isa(const std::string& name);

// The fp32 multiply-add rate of one thread on the active ISA, in multiply-adds per second,
// measured by running the table's FMA probe for `seconds` (> 0; the caller checks) after a
// short warm-up: on AVX2, 12 independent chains of 8-lane FMAs; on the scalar path, 12 of
// one float, each a multiply and an add (the rate of scalar arithmetic, not a vector peak).
double fma_peak(double seconds);

// Threads used inside one kernel call (>= 1). The default is OpenMP's (OMP_NUM_THREADS,
// else the number of cores); 1 without OpenMP.
int num_threads();
void set_num_threads(int n);
bool have_openmp();

// While a SerialScope exists on a thread, the kernels that thread calls run on it alone
// (other threads are unaffected). For a caller of many tiny kernels, such as the fused
// training pass (network/gradients.cpp, ~30 kernels per pattern at batch 1): there a parallel
// region costs about what it saves, and milliseconds when another process holds the other cores.
class SerialScope {
  public:
    SerialScope();
    ~SerialScope();
    SerialScope(const SerialScope&) = delete;
    SerialScope& operator=(const SerialScope&) = delete;

  private:
    bool outer_;
};

// The threads a kernel called on this thread may use: num_threads(), or 1 in a SerialScope.
int threads_here();

// Below this much work (multiply-adds, roughly) a call runs on one thread: a fork-join costs
// a few microseconds on an idle machine and can cost milliseconds on a loaded one (a team
// thread waiting for a core): far more than a batch-1 call computes.
constexpr int64_t kParallelMinWork = 1 << 18;

// Runs f(i) for i in [0, n), on up to threads_here() threads when the work is worth it
// (n * cost_per_item above a threshold). Each i runs exactly once, so a loop whose items
// write disjoint outputs gives the same result whatever the thread count. f must not throw.
// Items are handed out one at a time (dynamic schedule): when another process holds a core
// and one team thread waits for it, the others take the remaining items instead of
// leaving its fixed share for it (a static share would make a 2-thread call slower than a
// 1-thread one on a busy machine).
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, const F& f) {
#if defined(_OPENMP)
    const int nt = threads_here();
    if (nt > 1 && n > 1 && n * cost_per_item >= kParallelMinWork) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t i = 0; i < n; ++i) f(i);
        return;
    }
#else
    (void)cost_per_item;
#endif
    for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace lenet_fast

// The thread count as plain C functions exported from _core, for tools that find thread
// pools among the loaded shared libraries and call them through ctypes (threadpoolctl:
// see lenet_fast/runtime.py). The names carry the package's, so a tool can tell this _core
// from another package's. The setter returns 0, or -1 (nothing changed) for n < 1; no C++
// exception crosses this boundary.
#if defined(_WIN32)
#define LENET_FAST_C_EXPORT __declspec(dllexport)
#else
#define LENET_FAST_C_EXPORT __attribute__((visibility("default")))
#endif
extern "C" {
LENET_FAST_C_EXPORT int lenet_fast_get_num_threads(void);
LENET_FAST_C_EXPORT int lenet_fast_set_num_threads(int n);
}
