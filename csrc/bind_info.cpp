// pybind11 glue for the run-time settings: ISA choice, thread count, build facts.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "dispatch.h"

namespace lenet_fast {
namespace py = pybind11;

namespace {

std::string compiler() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
    return "msvc " + std::to_string(_MSC_VER);
#else
    return "unknown";
#endif
}

}  // namespace

void bind_info(py::module_& m) {
    m.def(
        "get_isa", [] { return std::string(active_kernels().name); },
        "Name of the instruction set the kernels use now: 'scalar' or 'avx2'.");
    m.def(
        "set_isa",
        [](const std::string& name) {
            try {
                set_isa(name);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        },
        py::arg("name"), "Use 'scalar', 'avx2' or 'auto' (the best this CPU runs).");
    m.def("compiled_isas", &compiled_isas, "ISAs compiled into this build.");
    m.def("available_isas", &available_isas, "ISAs this build can run on this CPU.");
    m.def("get_num_threads", &num_threads, "Threads one kernel call may use.");
    m.def(
        "set_num_threads",
        [](int n) {
            try {
                set_num_threads(n);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        },
        py::arg("n"), "Set the threads one kernel call may use (>= 1; 1 without OpenMP).");
    m.def(
        "fma_peak",
        [](double seconds) {
            if (!(std::isfinite(seconds) && seconds > 0.0)) {
                std::ostringstream msg;
                msg << "seconds: expected a finite duration > 0, got " << seconds;
                throw py::value_error(msg.str());
            }
            // only the probe's own registers are touched: no Python object
            py::gil_scoped_release nogil;
            return fma_peak(seconds);
        },
        py::arg("seconds"),
        "Measure the fp32 multiply-add rate of one thread on the active ISA for about "
        "`seconds` seconds; returns multiply-adds per second. On 'avx2', 12 independent "
        "chains of 8-lane FMA instructions (the vector FMA peak of one core); on 'scalar', "
        "12 chains of one float, each a multiply and an add (the scalar rate, not a vector "
        "peak). Runs on the calling thread with the GIL released. ValueError if `seconds` is "
        "not finite and > 0.");
    m.def("have_openmp", &have_openmp, "Whether this build uses OpenMP threads.");
    m.def("compiler", &compiler, "The compiler that built the core.");
}

}  // namespace lenet_fast
