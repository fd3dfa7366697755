#include "bind_util.h"

namespace lenet_fast {

// "list", "numpy.float32", "NoneType": what a user passed instead of an array.
std::string type_name(py::handle obj) {
    py::handle t = py::type::handle_of(obj);
    std::string mod = py::str(t.attr("__module__"));
    std::string name = py::str(t.attr("__qualname__"));
    return mod == "builtins" ? name : mod + "." + name;
}

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

F32 check_f32(py::handle obj, const char* name, const char* dims, int ndim) {
    const std::string want = std::string(dims) + " float32";
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + ": expected a numpy.ndarray " + want + ", got " +
                             type_name(obj));
    F32 a;
    a.arr = py::reinterpret_borrow<py::array>(obj);
    for (py::ssize_t i = 0; i < a.arr.ndim(); ++i) a.shape.push_back(a.arr.shape(i));
    if (!py::array_t<float>::check_(obj))
        throw py::type_error(std::string(name) + ": expected " + want + ", got " +
                             std::string(py::str(a.arr.dtype())) + " array of shape " +
                             shape_str(a.shape));
    require(ndim < 0 || a.arr.ndim() == ndim,
            std::string(name) + ": expected " + want + ", got shape " + shape_str(a.shape));
    const int flags = a.arr.flags();
    require(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_,
            std::string(name) + ": expected a C-contiguous array (numpy.ascontiguousarray(" + name +
                ") makes one), got a strided view");
    require(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_,
            std::string(name) +
                ": expected an aligned array, got a misaligned buffer "
                "(numpy.ascontiguousarray(" +
                name + ") makes an aligned copy)");
    a.data = static_cast<const float*>(a.arr.data());
    return a;
}

std::vector<uint8_t> check_table(py::handle obj, const char* name, int64_t rows, int64_t cols) {
    const std::string want =
        "(C,K) = (" + std::to_string(rows) + "," + std::to_string(cols) + ") bool";
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + ": expected a numpy.ndarray " + want + ", got " +
                             type_name(obj));
    auto arr = py::reinterpret_borrow<py::array>(obj);
    std::vector<int64_t> shape;
    for (py::ssize_t i = 0; i < arr.ndim(); ++i) shape.push_back(arr.shape(i));
    if (arr.dtype().kind() != 'b')
        throw py::type_error(std::string(name) + ": expected " + want + ", got " +
                             std::string(py::str(arr.dtype())) + " array of shape " +
                             shape_str(shape));
    require(shape == std::vector<int64_t>{rows, cols}, std::string(name) + ": expected " + want +
                                                           " (C from x, K from b), got shape " +
                                                           shape_str(shape));
    auto c = py::array_t<bool, py::array::c_style | py::array::forcecast>::ensure(obj);
    if (!c) throw py::error_already_set();
    std::vector<uint8_t> out(static_cast<size_t>(rows * cols));
    const bool* p = c.data();
    for (size_t i = 0; i < out.size(); ++i) out[i] = p[i] ? 1 : 0;
    return out;
}

py::array_t<float> new_f32(const std::vector<int64_t>& shape) {
    std::vector<py::ssize_t> s(shape.begin(), shape.end());
    return py::array_t<float>(s);
}

}  // namespace lenet_fast
