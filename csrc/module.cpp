// PYBIND11_MODULE(_core): wires the bind_*.cpp files together, nothing else.
#include <pybind11/pybind11.h>

namespace lenet_fast {
void bind_kernels(pybind11::module_& m);
void bind_info(pybind11::module_& m);
void bind_network(pybind11::module_& m);
void bind_image(pybind11::module_& m);
}  // namespace lenet_fast

PYBIND11_MODULE(_core, m) {
    m.doc() = "lenet_fast compiled core: LeNet-5 kernels (use lenet_fast.kernels)";
    lenet_fast::bind_kernels(m);
    lenet_fast::bind_info(m);
    lenet_fast::bind_network(m);
    lenet_fast::bind_image(m);
}
