// pybind11 glue for steelfast._core: converts arguments, releases the GIL, calls the C++ core. No logic lives here;
// the Python facade (steelfast/rle.py, steelfast/metrics.py) validates dtypes, shapes and memory layout first.
//
// Why releasing the GIL is safe in every kernel below: the kernels read only the numeric buffers of arrays and the
// std::string copies of Python strings made before the release, write only into arrays or std::vectors created here,
// and never touch a Python object. The py::array handles stay alive in this frame for the whole call, so the buffers
// cannot be freed underneath the kernel. simd_kernels keeps the GIL: it only reads a choice made once.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "metrics.hpp"
#include "postprocess.hpp"
#include "rle.hpp"
#include "simd.hpp"

namespace py = pybind11;
using namespace steelfast;

namespace {

int64_t elements(const py::array& array, py::ssize_t axis) { return array.strides(axis) / array.itemsize(); }

template <class T>
py::array_t<T> to_array(const std::vector<T>& values) {
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  // An empty vector's data() may be null, and memcpy from null is undefined even for 0 bytes.
  if (!values.empty()) std::memcpy(out.mutable_data(), values.data(), values.size() * sizeof(T));
  return out;
}

ProbView prob_view(const py::array& probs) {
  // probs: (N, C, H, W) float32 or float16, any whole-element strides.
  return ProbView{probs.data(),       probs.itemsize() == 2, probs.shape(0),      probs.shape(1),
                  probs.shape(2),     probs.shape(3),        elements(probs, 0), elements(probs, 1),
                  elements(probs, 2), elements(probs, 3)};
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "steelfast compiled core (private; use steelfast.rle and steelfast.metrics)";
  py::register_exception<RleError>(m, "RLEError", PyExc_ValueError);

  m.def(
      "encode_masks",
      [](const py::array& masks, int threads) {
        // masks: (N, C, H, W), any integer itemsize, any strides that are whole elements.
        MaskView first{masks.data(), static_cast<int>(masks.itemsize()), masks.shape(2), masks.shape(3),
                       elements(masks, 2), elements(masks, 3)};
        std::vector<std::string> out;
        {
          py::gil_scoped_release release;
          out = encode_masks(first, masks.shape(0) * masks.shape(1), masks.shape(1), elements(masks, 0),
                             elements(masks, 1), threads);
        }
        return out;
      },
      py::arg("masks").noconvert(), py::arg("threads"));

  m.def(
      "decode_many",
      [](const std::vector<std::string>& texts, py::array_t<uint8_t, py::array::c_style> out, int64_t total,
         int threads, bool zeroed) {
        // out: C-contiguous, len(texts) * total bytes; `zeroed` says it holds only zeros (a fresh np.zeros array).
        uint8_t* data = out.mutable_data();
        const int64_t size = static_cast<int64_t>(out.size());
        py::gil_scoped_release release;
        decode_many(texts, data, size, total, threads, zeroed);
      },
      py::arg("texts"), py::arg("out").noconvert(), py::arg("total"), py::arg("threads"), py::arg("zeroed"));

  m.def(
      "rle_runs",
      [](const std::string& text, int64_t total) {
        std::vector<Run> runs;
        {
          py::gil_scoped_release release;
          runs = parse_rle(text, total);
        }
        std::vector<int64_t> starts(runs.size()), lengths(runs.size());
        for (size_t i = 0; i < runs.size(); ++i) {
          starts[i] = runs[i].start;
          lengths[i] = runs[i].length;
        }
        return py::make_tuple(to_array(starts), to_array(lengths));
      },
      py::arg("text"), py::arg("total"));

  m.def(
      "areas_many",
      [](const std::vector<std::string>& texts, int64_t total, int threads) {
        std::vector<int64_t> out;
        {
          py::gil_scoped_release release;
          out = areas_many(texts, total, threads);
        }
        return to_array(out);
      },
      py::arg("texts"), py::arg("total"), py::arg("threads"));

  m.def(
      "dice_many",
      [](const py::array& pred, const py::array& truth, int64_t pairs, int threads) {
        // pred, truth: C-contiguous, same itemsize, `pairs` equal-sized masks each.
        py::array_t<double> out(static_cast<py::ssize_t>(pairs));
        double* data = out.mutable_data();
        const int64_t n = pairs > 0 ? static_cast<int64_t>(pred.size()) / pairs : 0;
        {
          py::gil_scoped_release release;
          dice_many(pred.data(), truth.data(), static_cast<int>(pred.itemsize()), pairs, n, data, threads);
        }
        return out;
      },
      py::arg("pred").noconvert(), py::arg("truth").noconvert(), py::arg("pairs"), py::arg("threads"));

  m.def(
      "dice_rle_many",
      [](const std::vector<std::string>& a, const std::vector<std::string>& b, int64_t total, int threads) {
        std::vector<double> out;
        {
          py::gil_scoped_release release;
          out = dice_rle_many(a, b, total, threads);
        }
        return out;
      },
      py::arg("a"), py::arg("b"), py::arg("total"), py::arg("threads"));

  m.def(
      "dice_rle",
      [](const std::string& a, const std::string& b, int64_t total) {
        py::gil_scoped_release release;
        return dice_rle(a, b, total);
      },
      py::arg("a"), py::arg("b"), py::arg("total"));

  m.def(
      "encode_probs",
      [](const py::array& probs, const std::vector<float>& thresholds, const std::vector<uint16_t>& half_thresholds,
         const std::vector<int64_t>& min_areas, int threads) {
        const ProbView view = prob_view(probs);
        std::vector<std::string> out;
        {
          py::gil_scoped_release release;
          out = encode_probs(view, thresholds, half_thresholds, min_areas, threads);
        }
        return out;
      },
      py::arg("probs").noconvert(), py::arg("thresholds"), py::arg("half_thresholds"), py::arg("min_areas"),
      py::arg("threads"));

  m.def(
      "encode_probs_records",
      [](const py::array& probs, const std::vector<float>& thresholds, const std::vector<uint16_t>& half_thresholds,
         const std::vector<int64_t>& min_areas, int threads) {
        const ProbView view = prob_view(probs);
        RecordTable table;
        {
          py::gil_scoped_release release;
          table = encode_probs_records(view, thresholds, half_thresholds, min_areas, threads);
        }
        return py::make_tuple(table.rles, to_array(table.presence), to_array(table.counts), to_array(table.boxes),
                              to_array(table.scores), table.defect_rles);
      },
      py::arg("probs").noconvert(), py::arg("thresholds"), py::arg("half_thresholds"), py::arg("min_areas"),
      py::arg("threads"));

  m.def("simd_kernels", &simd_kernels);
}
