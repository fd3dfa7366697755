// pybind11 glue for the run-time settings: ISA choice, thread count, build facts.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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
    m.def("have_openmp", &have_openmp, "Whether this build uses OpenMP threads.");
    m.def("compiler", &compiler, "The compiler that built the core.");
}

}  // namespace lenet_fast
