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
const Isa& active_isa();

// Names of the ISAs compiled into this build, and of those this CPU can run.
std::vector<std::string> compiled_isas();
std::vector<std::string> available_isas();

// Select "scalar", "avx2" or "auto" (the best this CPU runs). Throws std::invalid_argument
// with a message naming the choices for an unknown name or one this CPU or build lacks.
void set_isa(const std::string& name);

// Threads used inside one kernel call (>= 1). The default is OpenMP's (OMP_NUM_THREADS,
// else the number of cores); 1 without OpenMP.
int num_threads();
void set_num_threads(int n);
bool have_openmp();

// Runs f(i) for i in [0, n), on up to num_threads() threads when the work is worth it
// (n * cost_per_item above a threshold). Each i runs exactly once, so a loop whose items
// write disjoint outputs gives the same result whatever the thread count. f must not throw.
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, const F& f) {
#if defined(_OPENMP)
    const int nt = num_threads();
    if (nt > 1 && n > 1 && n * cost_per_item >= 32768) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < n; ++i) f(i);
        return;
    }
#else
    (void)cost_per_item;
#endif
    for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace lenet_fast
