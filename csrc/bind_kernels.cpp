// pybind11 glue for the kernels: validate with the GIL held, allocate the outputs, then
// release the GIL for the computation, which touches no Python object.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind_util.h"
#include "kernels.h"

namespace lenet_fast {
namespace {

using Shape = std::vector<int64_t>;
using std::to_string;

std::string dims2(const char* a, int64_t x, const char* b, int64_t y) {
    return std::string("(") + a + "," + b + ")=(" + to_string(x) + "," + to_string(y) + ")";
}

// The checks common to conv2d and sparse_conv2d: x (N,C,H,W) and a kernel of (R,S).
void check_conv_sizes(const F32& x, int64_t R, int64_t S, const char* wname) {
    require(x[1] >= 1 && x[2] >= 1 && x[3] >= 1,
            "x: expected (N,C,H,W) float32 with C, H, W >= 1, got shape " + shape_str(x.shape));
    require(R >= 1 && S >= 1,
            std::string(wname) + ": expected a kernel of R, S >= 1, got " + dims2("R", R, "S", S));
    require(R <= x[2] && S <= x[3], std::string(wname) + ": kernel " + dims2("R", R, "S", S) +
                                        " is larger than the input x " +
                                        dims2("H", x[2], "W", x[3]));
}

void check_same(const F32& a, const char* name, const Shape& want, const char* what) {
    require(a.shape == want, std::string(name) + ": expected " + what + " = " + shape_str(want) +
                                 ", got " + shape_str(a.shape));
}

py::array_t<float> conv2d_forward_py(py::handle xo, py::handle wo, py::handle bo) {
    F32 x = check_f32(xo, "x", "(N,C,H,W)", 4), w = check_f32(wo, "w", "(K,C,R,S)", 4),
        b = check_f32(bo, "b", "(K,)", 1);
    require(w[1] == x[1], "w: expected (K,C,R,S) with C=" + to_string(x[1]) + " to match x, got " +
                              shape_str(w.shape));
    require(w[0] >= 1, "w: expected K >= 1 output maps, got " + shape_str(w.shape));
    check_conv_sizes(x, w[2], w[3], "w");
    require(b[0] == w[0], "b: expected (K,) with K=" + to_string(w[0]) + " to match w, got " +
                              shape_str(b.shape));
    const ConvShape s{x[0], x[1], x[2], x[3], w[0], w[2], w[3]};
    auto y = new_f32({s.N, s.K, s.Ho(), s.Wo()});
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        conv2d_forward(yp, x.data, w.data, b.data, s);
    }
    return y;
}

py::tuple conv2d_backward_py(py::handle xo, py::handle wo, py::handle dyo) {
    F32 x = check_f32(xo, "x", "(N,C,H,W)", 4), w = check_f32(wo, "w", "(K,C,R,S)", 4),
        dy = check_f32(dyo, "dy", "(N,K,Ho,Wo)", 4);
    require(w[1] == x[1], "w: expected (K,C,R,S) with C=" + to_string(x[1]) + " to match x, got " +
                              shape_str(w.shape));
    require(w[0] >= 1, "w: expected K >= 1 output maps, got " + shape_str(w.shape));
    check_conv_sizes(x, w[2], w[3], "w");
    const ConvShape s{x[0], x[1], x[2], x[3], w[0], w[2], w[3]};
    check_same(dy, "dy", {s.N, s.K, s.Ho(), s.Wo()}, "(N,K,Ho,Wo) from x and w");
    auto dx = new_f32(x.shape), dw = new_f32(w.shape), db = new_f32({s.K});
    float *dxp = dx.mutable_data(), *dwp = dw.mutable_data(), *dbp = db.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        conv2d_backward(dxp, dwp, dbp, x.data, w.data, dy.data, s);
    }
    return py::make_tuple(dx, dw, db);
}

int64_t count_true(const std::vector<uint8_t>& t) {
    int64_t n = 0;
    for (auto v : t) n += v;
    return n;
}

py::array_t<float> sparse_conv2d_forward_py(py::handle xo, py::handle wo, py::handle bo,
                                            py::handle to) {
    F32 x = check_f32(xo, "x", "(N,C,H,W)", 4), w = check_f32(wo, "w", "(T,R,S)", 3),
        b = check_f32(bo, "b", "(K,)", 1);
    require(b[0] >= 1, "b: expected (K,) with K >= 1 output maps, got " + shape_str(b.shape));
    check_conv_sizes(x, w[1], w[2], "w");
    const auto table = check_table(to, "table", x[1], b[0]);
    const int64_t T = count_true(table);
    require(w[0] == T, "w: expected (T,R,S) with T=" + to_string(T) +
                           " kernels, one per True in table, got " + shape_str(w.shape));
    const ConvShape s{x[0], x[1], x[2], x[3], b[0], w[1], w[2]};
    auto y = new_f32({s.N, s.K, s.Ho(), s.Wo()});
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        sparse_conv2d_forward(yp, x.data, w.data, b.data, table.data(), s);
    }
    return y;
}

py::tuple sparse_conv2d_backward_py(py::handle xo, py::handle wo, py::handle dyo, py::handle to) {
    F32 x = check_f32(xo, "x", "(N,C,H,W)", 4), w = check_f32(wo, "w", "(T,R,S)", 3),
        dy = check_f32(dyo, "dy", "(N,K,Ho,Wo)", 4);
    require(dy[1] >= 1, "dy: expected (N,K,Ho,Wo) with K >= 1, got " + shape_str(dy.shape));
    check_conv_sizes(x, w[1], w[2], "w");
    const auto table = check_table(to, "table", x[1], dy[1]);
    const int64_t T = count_true(table);
    require(w[0] == T, "w: expected (T,R,S) with T=" + to_string(T) +
                           " kernels, one per True in table, got " + shape_str(w.shape));
    const ConvShape s{x[0], x[1], x[2], x[3], dy[1], w[1], w[2]};
    check_same(dy, "dy", {s.N, s.K, s.Ho(), s.Wo()}, "(N,K,Ho,Wo) from x, w and table");
    auto dx = new_f32(x.shape), dw = new_f32(w.shape), db = new_f32({s.K});
    float *dxp = dx.mutable_data(), *dwp = dw.mutable_data(), *dbp = db.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        sparse_conv2d_backward(dxp, dwp, dbp, x.data, w.data, dy.data, table.data(), s);
    }
    return py::make_tuple(dx, dw, db);
}

void check_subsample_x(const F32& x) {
    require(x[1] >= 1 && x[2] >= 2 && x[3] >= 2 && x[2] % 2 == 0 && x[3] % 2 == 0,
            "x: expected (N,C,H,W) float32 with C >= 1 and even H, W >= 2 for 2x2 subsampling, "
            "got shape " +
                shape_str(x.shape));
}

py::array_t<float> subsample_forward_py(py::handle xo, py::handle co, py::handle bo) {
    F32 x = check_f32(xo, "x", "(N,C,H,W)", 4), coef = check_f32(co, "coef", "(C,)", 1),
        bias = check_f32(bo, "bias", "(C,)", 1);
    check_subsample_x(x);
    check_same(coef, "coef", {x[1]}, "(C,) from x");
    check_same(bias, "bias", {x[1]}, "(C,) from x");
    auto y = new_f32({x[0], x[1], x[2] / 2, x[3] / 2});
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        subsample_forward(yp, x.data, coef.data, bias.data, x[0], x[1], x[2], x[3]);
    }
    return y;
}

py::tuple subsample_backward_py(py::handle xo, py::handle co, py::handle dyo) {
    F32 x = check_f32(xo, "x", "(N,C,H,W)", 4), coef = check_f32(co, "coef", "(C,)", 1),
        dy = check_f32(dyo, "dy", "(N,C,H/2,W/2)", 4);
    check_subsample_x(x);
    check_same(coef, "coef", {x[1]}, "(C,) from x");
    check_same(dy, "dy", {x[0], x[1], x[2] / 2, x[3] / 2}, "(N,C,H/2,W/2) from x");
    auto dx = new_f32(x.shape), dcoef = new_f32({x[1]}), dbias = new_f32({x[1]});
    float *dxp = dx.mutable_data(), *dcp = dcoef.mutable_data(), *dbp = dbias.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        subsample_backward(dxp, dcp, dbp, x.data, coef.data, dy.data, x[0], x[1], x[2], x[3]);
    }
    return py::make_tuple(dx, dcoef, dbias);
}

void check_linear(const F32& x, const F32& w) {
    require(x[1] >= 1, "x: expected (N,I) float32 with I >= 1, got shape " + shape_str(x.shape));
    require(w[1] == x[1], "w: expected (O,I) with I=" + to_string(x[1]) + " to match x, got " +
                              shape_str(w.shape));
    require(w[0] >= 1, "w: expected (O,I) with O >= 1, got " + shape_str(w.shape));
}

py::array_t<float> linear_forward_py(py::handle xo, py::handle wo, py::handle bo) {
    F32 x = check_f32(xo, "x", "(N,I)", 2), w = check_f32(wo, "w", "(O,I)", 2),
        b = check_f32(bo, "b", "(O,)", 1);
    check_linear(x, w);
    check_same(b, "b", {w[0]}, "(O,) from w");
    auto y = new_f32({x[0], w[0]});
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        linear_forward(yp, x.data, w.data, b.data, x[0], x[1], w[0]);
    }
    return y;
}

py::tuple linear_backward_py(py::handle xo, py::handle wo, py::handle dyo) {
    F32 x = check_f32(xo, "x", "(N,I)", 2), w = check_f32(wo, "w", "(O,I)", 2),
        dy = check_f32(dyo, "dy", "(N,O)", 2);
    check_linear(x, w);
    check_same(dy, "dy", {x[0], w[0]}, "(N,O) from x and w");
    auto dx = new_f32(x.shape), dw = new_f32(w.shape), db = new_f32({w[0]});
    float *dxp = dx.mutable_data(), *dwp = dw.mutable_data(), *dbp = db.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        linear_backward(dxp, dwp, dbp, x.data, w.data, dy.data, x[0], x[1], w[0]);
    }
    return py::make_tuple(dx, dw, db);
}

py::array_t<float> squash_forward_py(py::handle ao) {
    F32 a = check_f32(ao, "a", "(any shape)", -1);
    auto y = new_f32(a.shape);
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        squash_forward(yp, a.data, a.size());
    }
    return y;
}

py::array_t<float> squash_backward_py(py::handle yo, py::handle dyo) {
    F32 y = check_f32(yo, "y", "(any shape)", -1), dy = check_f32(dyo, "dy", "(any shape)", -1);
    check_same(dy, "dy", y.shape, "the shape of y");
    auto da = new_f32(y.shape);
    float* dap = da.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        squash_backward(dap, y.data, dy.data, y.size());
    }
    return da;
}

void check_rbf(const F32& x, const F32& c) {
    require(x[1] >= 1, "x: expected (N,J) float32 with J >= 1, got shape " + shape_str(x.shape));
    require(c[1] == x[1], "c: expected (M,J) with J=" + to_string(x[1]) + " to match x, got " +
                              shape_str(c.shape));
    require(c[0] >= 1, "c: expected (M,J) with M >= 1 centres, got " + shape_str(c.shape));
}

py::array_t<float> rbf_forward_py(py::handle xo, py::handle co) {
    F32 x = check_f32(xo, "x", "(N,J)", 2), c = check_f32(co, "c", "(M,J)", 2);
    check_rbf(x, c);
    auto y = new_f32({x[0], c[0]});
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        rbf_forward(yp, x.data, c.data, x[0], c[0], x[1]);
    }
    return y;
}

py::tuple rbf_backward_py(py::handle xo, py::handle co, py::handle dyo) {
    F32 x = check_f32(xo, "x", "(N,J)", 2), c = check_f32(co, "c", "(M,J)", 2),
        dy = check_f32(dyo, "dy", "(N,M)", 2);
    check_rbf(x, c);
    check_same(dy, "dy", {x[0], c[0]}, "(N,M) from x and c");
    auto dx = new_f32(x.shape), dc = new_f32(c.shape);
    float *dxp = dx.mutable_data(), *dcp = dc.mutable_data();
    {
        py::gil_scoped_release nogil;  // only raw buffers below; the arrays are kept alive above
        rbf_backward(dxp, dcp, x.data, c.data, dy.data, x[0], c[0], x[1]);
    }
    return py::make_tuple(dx, dc);
}

}  // namespace

void bind_kernels(py::module_& m) {
    m.def("conv2d_forward", &conv2d_forward_py, py::arg("x"), py::arg("w"), py::arg("b"),
          "y (N,K,H-R+1,W-S+1) from x (N,C,H,W), w (K,C,R,S), b (K,)");
    m.def("conv2d_backward", &conv2d_backward_py, py::arg("x"), py::arg("w"), py::arg("dy"),
          "(dx, dw, db) from x (N,C,H,W), w (K,C,R,S), dy (N,K,Ho,Wo)");
    m.def("sparse_conv2d_forward", &sparse_conv2d_forward_py, py::arg("x"), py::arg("w"),
          py::arg("b"), py::arg("table"),
          "y (N,K,Ho,Wo) from x (N,C,H,W), w (T,R,S), b (K,), table (C,K) bool");
    m.def("sparse_conv2d_backward", &sparse_conv2d_backward_py, py::arg("x"), py::arg("w"),
          py::arg("dy"), py::arg("table"),
          "(dx, dw, db) from x (N,C,H,W), w (T,R,S), dy (N,K,Ho,Wo), table (C,K) bool");
    m.def("subsample_forward", &subsample_forward_py, py::arg("x"), py::arg("coef"),
          py::arg("bias"), "y (N,C,H/2,W/2) from x (N,C,H,W), coef (C,), bias (C,)");
    m.def("subsample_backward", &subsample_backward_py, py::arg("x"), py::arg("coef"),
          py::arg("dy"), "(dx, dcoef, dbias) from x (N,C,H,W), coef (C,), dy (N,C,H/2,W/2)");
    m.def("linear_forward", &linear_forward_py, py::arg("x"), py::arg("w"), py::arg("b"),
          "y (N,O) from x (N,I), w (O,I), b (O,)");
    m.def("linear_backward", &linear_backward_py, py::arg("x"), py::arg("w"), py::arg("dy"),
          "(dx, dw, db) from x (N,I), w (O,I), dy (N,O)");
    m.def("squash_forward", &squash_forward_py, py::arg("a"), "y = 1.7159 tanh(2a/3), any shape");
    m.def("squash_backward", &squash_backward_py, py::arg("y"), py::arg("dy"),
          "da = dy f'(a) from y = f(a) and dy, same shape");
    m.def("rbf_forward", &rbf_forward_py, py::arg("x"), py::arg("c"),
          "y (N,M) squared distances from x (N,J) to the centres c (M,J)");
    m.def("rbf_backward", &rbf_backward_py, py::arg("x"), py::arg("c"), py::arg("dy"),
          "(dx, dc) from x (N,J), c (M,J), dy (N,M)");
}

}  // namespace lenet_fast
