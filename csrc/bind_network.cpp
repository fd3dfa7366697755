// pybind11 glue for the fused forward, gradients and SDLM pass (network.h): validate every
// argument with the GIL held, then release the GIL for the C++ call, which touches no
// Python object.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "bind_util.h"
#include "network.h"

namespace lenet_fast {
namespace {

using Shape = std::vector<int64_t>;
using std::to_string;

// layout.PARAM_SHAPES order, then the centres: the LeNetParam enum's order.
const char* const kNames[kNumLeNetParams] = {"c1.w", "c1.b",    "s2.coef", "s2.bias", "c3.w",
                                             "c3.b", "s4.coef", "s4.bias", "c5.w",    "c5.b",
                                             "f6.w", "f6.b",    "rbf.c"};

Shape param_shape(int q, int64_t T) {
    switch (q) {
        case kC1W: return {6, 1, 5, 5};
        case kC1B:
        case kS2Coef:
        case kS2Bias: return {6};
        case kC3W: return {T, 5, 5};
        case kC3B:
        case kS4Coef:
        case kS4Bias: return {16};
        case kC5W: return {120, 16, 5, 5};
        case kC5B: return {120};
        case kF6W: return {84, 120};
        case kF6B: return {84};
        default: return {10, 84};
    }
}

// A float32 C-contiguous array of exactly `want`; `name` as the messages should say it.
F32 check_exact(py::handle obj, const std::string& name, const Shape& want) {
    F32 a = check_f32(obj, name.c_str(), shape_str(want).c_str(), static_cast<int>(want.size()));
    require(a.shape == want,
            name + ": expected " + shape_str(want) + " float32, got shape " + shape_str(a.shape));
    return a;
}

void require_writeable(const F32& a, const std::string& name) {
    require(a.arr.writeable(), name +
                                   ": expected a writeable array (it is updated in place), "
                                   "got a read-only one");
}

// The arrays of a dict: exactly the 12 trainable names of layout.PARAM_SHAPES.
std::vector<F32> check_dict(py::handle obj, const char* name, int64_t T) {
    if (!py::isinstance<py::dict>(obj))
        throw py::type_error(std::string(name) +
                             ": expected a dict of the 12 LeNet-5 arrays "
                             "by name ('c1.w' ... 'f6.b'), got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    auto d = py::reinterpret_borrow<py::dict>(obj);
    for (auto item : d) {
        const std::string key = py::str(item.first);
        const bool known = std::find_if(kNames, kNames + kRbfC,
                                        [&](const char* n) { return key == n; }) != kNames + kRbfC;
        require(known && py::isinstance<py::str>(item.first),
                std::string(name) + ": unexpected key " + std::string(py::repr(item.first)) +
                    " (expected the 12 names 'c1.w' ... 'f6.b'; trainable RBF centres go in "
                    "centres and centres_step)");
    }
    std::vector<F32> out;
    for (int q = 0; q < kRbfC; ++q) {
        require(d.contains(kNames[q]), std::string(name) + ": missing '" + kNames[q] +
                                           "' (expected the 12 names "
                                           "'c1.w' ... 'f6.b')");
        out.push_back(check_exact(d[kNames[q]], std::string(name) + "['" + kNames[q] + "']",
                                  param_shape(q, T)));
    }
    return out;
}

// An integer array of shape (n,) (n < 0: any length) as int64, values in [lo, hi].
py::array_t<int64_t> check_index(py::handle obj, const char* name, int64_t n, int64_t lo,
                                 int64_t hi, const std::string& range) {
    const std::string want = n < 0 ? "(P,) integers" : "(" + to_string(n) + ",) integers";
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + ": expected a numpy.ndarray " + want + ", got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    auto arr = py::reinterpret_borrow<py::array>(obj);
    Shape shape;
    for (py::ssize_t i = 0; i < arr.ndim(); ++i) shape.push_back(arr.shape(i));
    const char kind = arr.dtype().kind();
    if (kind != 'i' && kind != 'u')
        throw py::type_error(std::string(name) + ": expected " + want + ", got " +
                             std::string(py::str(arr.dtype())) + " array of shape " +
                             shape_str(shape));
    require(shape.size() == 1 && (n < 0 || shape[0] == n),
            std::string(name) + ": expected " + want + ", got shape " + shape_str(shape));
    if (kind == 'u' && arr.dtype().itemsize() == 8) {  // uint64 beyond int64: out of range
        auto u = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(obj);
        for (py::ssize_t i = 0; i < u.size(); ++i)
            require(u.data()[i] <= static_cast<uint64_t>(hi),
                    std::string(name) + ": expected values in " + range + ", got " +
                        to_string(u.data()[i]) + " at index " + to_string(i));
    }
    auto c = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(obj);
    if (!c) throw py::error_already_set();
    const int64_t* v = c.data();
    for (py::ssize_t i = 0; i < c.size(); ++i)
        require(v[i] >= lo && v[i] <= hi, std::string(name) + ": expected values in " + range +
                                              ", got " + to_string(v[i]) + " at index " +
                                              to_string(i));
    return c;
}

double check_positive(double v, const char* name) {
    require(std::isfinite(v) && v > 0, std::string(name) + ": expected a finite number > 0, got " +
                                           std::string(py::repr(py::float_(v))));
    return v;
}

struct Span {
    const char* lo;
    const char* hi;
    std::string name;
};

Span span_of(const F32& a, const std::string& name) {
    const char* lo = static_cast<const char*>(a.arr.data());
    return {lo, lo + a.arr.nbytes(), name};
}

LossOptions loss_options(const std::string& loss, double loss_scale, double map_j,
                         const std::string& subsample) {
    require(loss == "mse" || loss == "map", "loss: expected 'mse' or 'map', got '" + loss + "'");
    require(subsample == "sum" || subsample == "mean",
            "subsample: expected 'sum' or 'mean', got '" + subsample + "'");
    LossOptions opt;
    opt.map_loss = loss == "map";
    opt.subsample_mean = subsample == "mean";
    opt.loss_scale = check_positive(loss_scale, "loss_scale");
    opt.map_j = check_positive(map_j, "map_j");
    return opt;
}

py::tuple network_gradients_py(py::handle params_o, py::handle centres_o, py::handle x_o,
                               py::handle labels_o, py::handle table_o, const std::string& loss,
                               double loss_scale, double map_j, const std::string& subsample,
                               bool train_centres) {
    const LossOptions opt = loss_options(loss, loss_scale, map_j, subsample);
    const auto table = check_table(table_o, "table", 6, 16);
    int64_t T = 0;
    for (auto t : table) T += t;
    std::vector<F32> params = check_dict(params_o, "params", T);
    params.push_back(check_exact(centres_o, "centres", {10, 84}));
    F32 x = check_f32(x_o, "x", "(N,1,32,32)", 4);
    require(x[1] == 1 && x[2] == 32 && x[3] == 32,
            "x: expected (N,1,32,32) float32, got shape " + shape_str(x.shape));
    const int64_t N = x[0];
    require(N >= 1, "x: gradients of the mean loss need at least one pattern, got an empty batch");
    auto labels = check_index(labels_o, "labels", N, 0, 9, "0..9 (digits)");

    const float* p[kNumLeNetParams];
    float* g[kNumLeNetParams] = {};
    py::dict grads;
    for (int q = 0; q < kNumLeNetParams; ++q) {
        p[q] = params[q].data;
        if (q == kRbfC && !train_centres) continue;
        py::array_t<float> a = new_f32(param_shape(q, T));
        g[q] = a.mutable_data();
        grads[kNames[q]] = a;
    }
    py::array_t<float> y = new_f32({N, 10});
    float* yd = y.mutable_data();
    GradResult r;
    {
        // Only raw buffers below; params, x, labels, table, grads and y keep them alive.
        py::gil_scoped_release nogil;
        r = network_gradients(g, yd, p, x.data, labels.data(), N, table.data(), opt);
    }
    return py::make_tuple(r.loss_sum, r.errors, grads, y);
}

py::tuple sdlm_pass_py(py::handle params_o, py::handle steps_o, py::handle centres_o,
                       py::handle centres_step_o, py::handle x_o, py::handle labels_o,
                       py::handle order_o, py::handle table_o, const std::string& loss,
                       double loss_scale, double map_j, const std::string& subsample) {
    const LossOptions opt = loss_options(loss, loss_scale, map_j, subsample);
    const auto table = check_table(table_o, "table", 6, 16);
    int64_t T = 0;
    for (auto t : table) T += t;
    std::vector<F32> params = check_dict(params_o, "params", T);
    std::vector<F32> steps = check_dict(steps_o, "steps", T);
    params.push_back(check_exact(centres_o, "centres", {10, 84}));
    const bool train_rbf = !centres_step_o.is_none();
    if (train_rbf) steps.push_back(check_exact(centres_step_o, "centres_step", {10, 84}));

    F32 x = check_f32(x_o, "x", "(N,1,32,32)", 4);
    require(x[1] == 1 && x[2] == 32 && x[3] == 32,
            "x: expected (N,1,32,32) float32, got shape " + shape_str(x.shape));
    const int64_t N = x[0];
    auto labels = check_index(labels_o, "labels", N, 0, 9, "0..9 (digits)");
    auto order =
        check_index(order_o, "order", -1, 0, N - 1, "[0, " + to_string(N) + ") (indices into x)");

    // The arrays written in place must be writeable and share no memory with any other
    // argument: the Python loop reads every input before it writes, this pass does not.
    std::vector<Span> spans;
    const int written = train_rbf ? kNumLeNetParams : kRbfC;
    for (int q = 0; q < kNumLeNetParams; ++q) {
        const std::string pname =
            q == kRbfC ? "centres" : "params['" + std::string(kNames[q]) + "']";
        if (q < written) require_writeable(params[q], pname);
        spans.push_back(span_of(params[q], pname));
    }
    for (size_t q = 0; q < steps.size(); ++q)
        spans.push_back(span_of(steps[q], q == kRbfC ? std::string("centres_step")
                                                     : "steps['" + std::string(kNames[q]) + "']"));
    spans.push_back(span_of(x, "x"));
    for (int q = 0; q < written; ++q)
        for (size_t o = 0; o < spans.size(); ++o)
            if (o != static_cast<size_t>(q) && spans[q].lo < spans[o].hi &&
                spans[o].lo < spans[q].hi)
                throw py::value_error(spans[q].name + ": shares memory with " + spans[o].name +
                                      "; an array updated in place must not overlap another "
                                      "argument (pass a copy)");

    SdlmNet net;
    for (int q = 0; q < kNumLeNetParams; ++q) {
        // Fixed centres may be read-only (tables.RBF_CODES): only read, never written.
        net.p[q] = q < written ? static_cast<float*>(params[q].arr.mutable_data())
                               : const_cast<float*>(params[q].data);
        net.step[q] = q < written ? steps[q].data : nullptr;
    }
    SdlmResult r;
    {
        // Only raw buffers below; every array is kept alive by params, steps, x, labels,
        // order and table above.
        py::gil_scoped_release nogil;
        r = sdlm_pass(net, x.data, labels.data(), order.data(), order.size(), table.data(), opt);
    }
    return py::make_tuple(r.loss_sum, r.errors);
}

// The happy path of network_forward's checks, building no message (the full checks below
// format theirs eagerly: ~15 us a call, as much as the network's arithmetic on one image):
// obj is a float32, C-contiguous, aligned ndarray of shape `want` (want[0] < 0: any N).
// Anything else goes through the full checks, which raise with their usual messages.
bool fast_f32(py::handle obj, std::initializer_list<int64_t> want, std::vector<py::object>& keep,
              const float** data, int64_t* n0) {
    if (!py::array_t<float>::check_(obj)) return false;
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (a.ndim() != static_cast<py::ssize_t>(want.size())) return false;
    py::ssize_t i = 0;
    for (const int64_t w : want) {
        if (w >= 0 && a.shape(i) != w) return false;
        ++i;
    }
    const int need =
        py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if ((a.flags() & need) != need) return false;
    *data = static_cast<const float*>(a.data());
    if (n0) *n0 = a.shape(0);
    keep.push_back(std::move(a));  // a reference for the GIL-free call
    return true;
}

bool fast_forward_args(py::handle params_o, py::handle centres_o, py::handle x_o,
                       py::handle table_o, const float** p, uint8_t* table, const float** x,
                       int64_t* N, std::vector<py::object>& keep) {
    if (!py::isinstance<py::array>(table_o)) return false;
    auto t = py::reinterpret_borrow<py::array>(table_o);
    if (t.dtype().kind() != 'b' || t.itemsize() != 1 || t.ndim() != 2 || t.shape(0) != 6 ||
        t.shape(1) != 16 || !(t.flags() & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
        return false;
    const auto* tb = static_cast<const uint8_t*>(t.data());
    int64_t T = 0;
    for (int i = 0; i < 96; ++i) T += (table[i] = tb[i] ? 1 : 0);
    if (!PyDict_CheckExact(params_o.ptr()) || PyDict_Size(params_o.ptr()) != kRbfC) return false;
    // the names as Python strings made once (interned: the dict's own keys hash alike),
    // not a temporary string per name per call
    static PyObject* const* const keys = [] {
        static PyObject* k[kRbfC];
        for (int q = 0; q < kRbfC; ++q) k[q] = PyUnicode_InternFromString(kNames[q]);
        return k;
    }();
    for (int q = 0; q < kRbfC; ++q) {
        PyObject* a = keys[q] ? PyDict_GetItem(params_o.ptr(), keys[q]) : nullptr;  // borrowed
        if (a == nullptr) return false;
        bool ok = false;
        switch (q) {
            case kC1W: ok = fast_f32(a, {6, 1, 5, 5}, keep, &p[q], nullptr); break;
            case kC3W: ok = fast_f32(a, {T, 5, 5}, keep, &p[q], nullptr); break;
            case kC5W: ok = fast_f32(a, {120, 16, 5, 5}, keep, &p[q], nullptr); break;
            case kF6W: ok = fast_f32(a, {84, 120}, keep, &p[q], nullptr); break;
            default: ok = fast_f32(a, {lenet_param_size(q, T)}, keep, &p[q], nullptr); break;
        }
        if (!ok) return false;
    }
    return fast_f32(centres_o, {10, 84}, keep, &p[kRbfC], nullptr) &&
           fast_f32(x_o, {-1, 1, 32, 32}, keep, x, N);
}

py::array_t<float> network_forward_py(py::handle params_o, py::handle centres_o, py::handle x_o,
                                      py::handle table_o, const std::string& subsample) {
    require(subsample == "sum" || subsample == "mean",
            "subsample: expected 'sum' or 'mean', got '" + subsample + "'");
    ForwardOptions opt;
    opt.subsample_mean = subsample == "mean";
    const float* p[kNumLeNetParams];
    uint8_t table[96];
    const float* xd = nullptr;
    int64_t N = 0;
    std::vector<py::object> keep;  // every array, alive while the GIL is released
    keep.reserve(kNumLeNetParams + 1);
    if (!fast_forward_args(params_o, centres_o, x_o, table_o, p, table, &xd, &N, keep)) {
        keep.clear();
        const auto tab = check_table(table_o, "table", 6, 16);
        int64_t T = 0;
        for (auto t : tab) T += t;
        std::copy(tab.begin(), tab.end(), table);
        std::vector<F32> params = check_dict(params_o, "params", T);
        params.push_back(check_exact(centres_o, "centres", {10, 84}));
        F32 x = check_f32(x_o, "x", "(N,1,32,32)", 4);
        require(x[1] == 1 && x[2] == 32 && x[3] == 32,
                "x: expected (N,1,32,32) float32, got shape " + shape_str(x.shape));
        N = x[0];
        xd = x.data;
        for (int q = 0; q < kNumLeNetParams; ++q) {
            p[q] = params[q].data;
            keep.push_back(params[q].arr);
        }
        keep.push_back(x.arr);
    }
    py::array_t<float> y = new_f32({N, 10});
    float* yd = y.mutable_data();
    {
        // Only raw buffers below; `keep` holds a reference to every array.
        py::gil_scoped_release nogil;
        network_forward(yd, p, xd, N, table, opt);
    }
    return y;
}

}  // namespace

void bind_network(py::module_& m) {
    m.def("sdlm_pass", &sdlm_pass_py, py::arg("params"), py::arg("steps"), py::arg("centres"),
          py::arg("centres_step"), py::arg("x"), py::arg("labels"), py::arg("order"),
          py::arg("table"), py::arg("loss"), py::arg("loss_scale"), py::arg("map_j"),
          py::arg("subsample"),
          "One SDLM pass, one pattern per update, params updated in place: "
          "(sum of the losses, errors). params/steps: dicts of the 12 arrays; centres (10,84), "
          "trained when centres_step (10,84) is given, else None; x (N,1,32,32); labels (N,); "
          "order (P,); table (6,16) bool; loss 'mse'|'map'; subsample 'sum'|'mean'.");
    m.def("network_forward", &network_forward_py, py::arg("params"), py::arg("centres"),
          py::arg("x"), py::arg("table"), py::arg("subsample"),
          "LeNet-5 inference in one call: the RBF penalties (N,10) of x (N,1,32,32). "
          "params: dict of the 12 arrays ('c1.w' ... 'f6.b'); centres (10,84); table (6,16) "
          "bool; subsample 'sum'|'mean'. Threads over the images; the GIL is released.");
    m.def("network_gradients", &network_gradients_py, py::arg("params"), py::arg("centres"),
          py::arg("x"), py::arg("labels"), py::arg("table"), py::arg("loss"), py::arg("loss_scale"),
          py::arg("map_j"), py::arg("subsample"), py::arg("train_centres"),
          "Forward and backward of LeNet-5 in one call: (sum over the batch of the scaled "
          "loss, errors, gradients of the batch-mean loss as a dict of new arrays ('rbf.c' "
          "too when train_centres), penalties (N,10)). params: dict of the 12 arrays; "
          "centres (10,84); x (N,1,32,32), N >= 1; labels (N,) in 0..9; table (6,16) bool; "
          "loss 'mse'|'map'; subsample 'sum'|'mean'. Threads over blocks of 8 images "
          "(the result does not depend on the thread count); the GIL is released.");
}

}  // namespace lenet_fast
