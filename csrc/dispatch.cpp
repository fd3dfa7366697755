#include "dispatch.h"

#include <atomic>
#include <stdexcept>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lenet_fast {
namespace {

bool cpu_has_avx2_fma() {
#if defined(LENET_FAST_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
    // libgcc also checks that the OS saves the YMM registers (OSXSAVE/XGETBV).
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

const KernelTable* best_isa() {
#if defined(LENET_FAST_HAVE_AVX2)
    if (cpu_has_avx2_fma()) return &avx2::kTable;
#endif
    return &scalar::kTable;
}

int default_threads() {
#if defined(_OPENMP)
    const int n = omp_get_max_threads();
    return n > 0 ? n : 1;
#else
    return 1;
#endif
}

std::atomic<const KernelTable*> g_isa{best_isa()};
std::atomic<int> g_threads{default_threads()};

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& e : v) s += (s.empty() ? "" : ", ") + e;
    return s;
}

}  // namespace

const KernelTable& active_kernels() { return *g_isa.load(std::memory_order_acquire); }

std::vector<std::string> compiled_isas() {
    std::vector<std::string> v{"scalar"};
#if defined(LENET_FAST_HAVE_AVX2)
    v.push_back("avx2");
#endif
    return v;
}

std::vector<std::string> available_isas() {
    std::vector<std::string> v{"scalar"};
    if (cpu_has_avx2_fma()) v.push_back("avx2");
    return v;
}

void set_isa(const std::string& name) {
    if (name == "auto") {
        g_isa.store(best_isa(), std::memory_order_release);
        return;
    }
    if (name == "scalar") {
        g_isa.store(&scalar::kTable, std::memory_order_release);
        return;
    }
    if (name == "avx2") {
#if defined(LENET_FAST_HAVE_AVX2)
        if (cpu_has_avx2_fma()) {
            g_isa.store(&avx2::kTable, std::memory_order_release);
            return;
        }
        throw std::invalid_argument(
            "isa 'avx2' is not supported by this CPU (it lacks AVX2 or "
            "FMA); available: " +
            join(available_isas()));
#else
        throw std::invalid_argument(
            "isa 'avx2' is not compiled into this build (a non-x86 "
            "build, or LENET_FAST_AVX2=OFF); available: " +
            join(available_isas()));
#endif
    }
    throw std::invalid_argument("isa: expected one of 'scalar', 'avx2', 'auto', got '" + name +
                                "'");
}

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

namespace {
thread_local bool t_serial = false;  // per thread, so not shared state
}

SerialScope::SerialScope() : outer_(!t_serial) { t_serial = true; }
SerialScope::~SerialScope() {
    if (outer_) t_serial = false;
}

int threads_here() { return t_serial ? 1 : num_threads(); }

void set_num_threads(int n) {
    if (n < 1)
        throw std::invalid_argument("n: expected a thread count >= 1, got " + std::to_string(n));
    g_threads.store(have_openmp() ? n : 1, std::memory_order_relaxed);
}

bool have_openmp() {
#if defined(_OPENMP)
    return true;
#else
    return false;
#endif
}

}  // namespace lenet_fast

extern "C" int lenet_fast_get_num_threads(void) { return lenet_fast::num_threads(); }

extern "C" int lenet_fast_set_num_threads(int n) {
    if (n < 1) return -1;
    lenet_fast::set_num_threads(n);
    return 0;
}
