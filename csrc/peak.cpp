// The measured FMA peak of one core: the active table's FMA probe (isa.h's fma_chains),
// timed with the steady clock. What the benchmark suite divides by for "% of FMA peak".
#include <chrono>

#include "dispatch.h"

namespace lenet_fast {

double fma_peak(double seconds) {
    const KernelTable& k = active_kernels();
    // ~0.1 ms per call at a few GHz on either path: fine enough to stop near `seconds`,
    // long enough that reading the clock costs nothing
    constexpr int64_t kRounds = 1 << 16;
    using clock = std::chrono::steady_clock;
    // every call's chains are summed into a volatile, so no call can be dropped
    double sink = 0.0;
    volatile double kept = 0.0;
    // warm-up: a core that has not run wide vector code for a while runs it slowly at first
    for (int i = 0; i < 8; ++i) {
        k.fma_chains(kRounds, &sink);
        kept = kept + sink;
    }
    double macs = 0.0, elapsed = 0.0;
    const auto t0 = clock::now();
    do {
        macs += static_cast<double>(k.fma_chains(kRounds, &sink));
        kept = kept + sink;
        elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    } while (elapsed < seconds);
    return macs / elapsed;
}

}  // namespace lenet_fast
