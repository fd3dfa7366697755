// Argument checks shared by the bind_*.cpp files. They run with the GIL held and raise
// TypeError (not an array, wrong dtype) or ValueError (wrong shape, sizes that disagree)
// naming the argument and what was expected, e.g.
//   x: expected (N,C,H,W) float32, got shape (3,6,14)
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lenet_fast {
namespace py = pybind11;

// A validated float32 C-contiguous input array: keeps a reference while the kernel runs.
struct F32 {
    py::array arr;
    const float* data = nullptr;
    std::vector<int64_t> shape;
    int64_t operator[](size_t i) const { return shape[i]; }
    int64_t size() const {
        int64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

std::string shape_str(const std::vector<int64_t>& shape);

// dims: the expected shape in legend letters, e.g. "(N,C,H,W)"; ndim < 0 accepts any ndim.
F32 check_f32(py::handle obj, const char* name, const char* dims, int ndim);

// A bool array of exactly shape (rows, cols), copied to C order as bytes 0/1.
std::vector<uint8_t> check_table(py::handle obj, const char* name, int64_t rows, int64_t cols);

// Raise ValueError(msg) unless ok.
inline void require(bool ok, const std::string& msg) {
    if (!ok) throw py::value_error(msg);
}

// A new float32 array of the given shape (filled by the kernel).
py::array_t<float> new_f32(const std::vector<int64_t>& shape);

}  // namespace lenet_fast
