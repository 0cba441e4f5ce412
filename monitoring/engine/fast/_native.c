/*
 * Walks over sorted sample times (monitoring.engine.fast.native).
 *
 * An evaluation over many steps searches each series' sample times for every
 * step time. NumPy's searchsorted does a binary search per step; the step times
 * ascend, so one forward walk through the samples finds them all (each step
 * moves a few samples on), about four times faster on a week of 15 s samples
 * at a 60 s step. The same walk computes rate/increase/delta window by
 * window, and one pass the prefix sums of sum_over_time/avg_over_time.
 *
 * Every function here has a NumPy twin (native.py, kernels.py) that
 * tests/unit/test_native.py compares it with, element for element and bit for
 * bit; extrapolated_rate is compared bit for bit with the reference evaluator,
 * which its NumPy twin matches only up to the rounding of its prefix sums.
 *
 * Arrays come in through the buffer protocol (C-contiguous, checked by the
 * Python wrapper), so this module needs no NumPy headers to build. The loops
 * run with the interpreter lock released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

static int
check(Py_buffer *buf, Py_ssize_t itemsize, const char *name)
{
    if (buf->len % itemsize != 0) {
        PyErr_Format(PyExc_ValueError, "%s: buffer length is not a multiple of %zd",
                     name, itemsize);
        return -1;
    }
    return 0;
}

/* Release the buffers PyArg_ParseTuple filled. */
static void
release(Py_buffer *const *buffers, size_t count)
{
    for (size_t b = 0; b < count; b++) {
        PyBuffer_Release(buffers[b]);
    }
}

/* Working memory of the calling thread, kept between calls: fresh pages cost a
   page fault each (a few microseconds in a virtual machine), more than the walk
   that uses them. Grows to the largest request; one block per thread. */
static _Thread_local void *scratch_block = NULL;
static _Thread_local size_t scratch_size = 0;

static void *
scratch(size_t bytes)
{
    if (bytes > scratch_size) {
        void *grown = PyMem_RawMalloc(bytes);
        if (grown == NULL) {
            return NULL;
        }
        PyMem_RawFree(scratch_block);
        scratch_block = grown;
        scratch_size = bytes;
    }
    return scratch_block;
}

/* Whether keys[0..k) never decrease (the walk needs it). */
static int
ascending(const int64_t *keys, Py_ssize_t k)
{
    for (Py_ssize_t j = 1; j < k; j++) {
        if (keys[j] < keys[j - 1]) {
            return 0;
        }
    }
    return 1;
}

/* The walk itself: from sample i on, past every sample at or before key. */
static inline Py_ssize_t
walk(const int64_t *t, Py_ssize_t n, Py_ssize_t i, int64_t key)
{
    while (i < n && t[i] <= key) {
        i++;
    }
    return i;
}

PyDoc_STRVAR(search_right_doc,
"search_right(ts, keys, out) -> bool\n\n"
"out[j] = the number of ts <= keys[j] (NumPy's searchsorted, side='right'),\n"
"for ascending int64 ts and keys; out is int64 of len(keys). False (and out\n"
"untouched) when keys do not ascend.");

static PyObject *
search_right(PyObject *self, PyObject *args)
{
    Py_buffer ts, keys, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &ts, &keys, &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check(&ts, 8, "ts") || check(&keys, 8, "keys") || check(&out, 8, "out")) {
        goto done;
    }
    Py_ssize_t n = ts.len / 8, k = keys.len / 8;
    if (out.len / 8 != k) {
        PyErr_SetString(PyExc_ValueError, "out: length differs from keys");
        goto done;
    }
    const int64_t *t = ts.buf, *key = keys.buf;
    int64_t *o = out.buf;
    int sorted;
    Py_BEGIN_ALLOW_THREADS
    sorted = ascending(key, k);
    if (sorted) {
        Py_ssize_t i = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            i = walk(t, n, i, key[j]);
            o[j] = i;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyBool_FromLong(sorted);
done:
    release((Py_buffer *[]){&ts, &keys, &out}, 3);
    return result;
}

PyDoc_STRVAR(lookup_doc,
"lookup(ts, values, stale, times, lookback, out_values, out_present, out_stamps) -> bool\n\n"
"The newest sample in (t - lookback, t] of one series for every time t:\n"
"out_values (float64) and out_present (bool, one byte each) per time, and,\n"
"unless out_stamps is None, the sample's time (int64). stale is None or one\n"
"byte per sample (1: a staleness marker, never present). Where nothing is\n"
"present, the values and stamps are those of the newest sample at or before\n"
"t, else of the first sample (0.0 for a series without samples, whose\n"
"stamps are left as they are). False (outputs untouched) when times do not\n"
"ascend.");

static PyObject *
lookup(PyObject *self, PyObject *args)
{
    Py_buffer ts, values, stale, times, out_values, out_present, out_stamps;
    PyObject *stale_obj, *stamps_obj;
    long long lookback;
    if (!PyArg_ParseTuple(args, "y*y*Oy*Lw*w*O", &ts, &values, &stale_obj, &times,
                          &lookback, &out_values, &out_present, &stamps_obj)) {
        return NULL;
    }
    int have_stale = stale_obj != Py_None, have_stamps = stamps_obj != Py_None;
    PyObject *result = NULL;
    memset(&stale, 0, sizeof stale);
    memset(&out_stamps, 0, sizeof out_stamps);
    if (have_stale && PyObject_GetBuffer(stale_obj, &stale, PyBUF_SIMPLE) < 0) {
        have_stale = 0;
        goto done;
    }
    if (have_stamps && PyObject_GetBuffer(stamps_obj, &out_stamps, PyBUF_WRITABLE) < 0) {
        have_stamps = 0;
        goto done;
    }
    if (check(&ts, 8, "ts") || check(&values, 8, "values") || check(&times, 8, "times")
            || check(&out_values, 8, "out_values")
            || (have_stamps && check(&out_stamps, 8, "out_stamps"))) {
        goto done;
    }
    Py_ssize_t n = ts.len / 8, k = times.len / 8;
    if (values.len / 8 != n || (have_stale && stale.len != n)) {
        PyErr_SetString(PyExc_ValueError, "values/stale: length differs from ts");
        goto done;
    }
    if (out_values.len / 8 != k || out_present.len != k
            || (have_stamps && out_stamps.len / 8 != k)) {
        PyErr_SetString(PyExc_ValueError, "outputs: length differs from times");
        goto done;
    }
    const int64_t *t = ts.buf, *tm = times.buf;
    const double *v = values.buf;
    const uint8_t *st = have_stale ? stale.buf : NULL;
    double *ov = out_values.buf;
    uint8_t *op = out_present.buf;
    int64_t *os = have_stamps ? out_stamps.buf : NULL;
    int sorted;
    Py_BEGIN_ALLOW_THREADS
    sorted = ascending(tm, k);
    if (sorted && n == 0) {
        for (Py_ssize_t j = 0; j < k; j++) {
            ov[j] = 0.0;
            op[j] = 0;
        }
    }
    else if (sorted) {
        Py_ssize_t i = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            int64_t now = tm[j];
            i = walk(t, n, i, now);
            Py_ssize_t idx = i > 0 ? i - 1 : 0;
            int64_t at = t[idx];
            /* now - lookback wraps around as NumPy's int64 does (no undefined overflow). */
            int64_t oldest = (int64_t)((uint64_t)now - (uint64_t)lookback);
            op[j] = i > 0 && at > oldest && !(st != NULL && st[idx]);
            ov[j] = v[idx];
            if (os != NULL) {
                os[j] = at;
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyBool_FromLong(sorted);
done:
    release((Py_buffer *[]){&ts, &values, &times, &out_values, &out_present}, 5);
    if (have_stale) {
        PyBuffer_Release(&stale);
    }
    if (have_stamps) {
        PyBuffer_Release(&out_stamps);
    }
    return result;
}

PyDoc_STRVAR(extrapolated_rate_doc,
"extrapolated_rate(ts, values, ends, range_ms, range_seconds, is_counter, is_rate,\n"
"                  out_values, out_present) -> bool\n\n"
"rate (is_counter, is_rate), increase (is_counter) or delta (neither) of one\n"
"series over the windows (end - range_ms, end] of every ascending end:\n"
"Prometheus's extrapolatedRate, in its order of operations (counter resets\n"
"added one by one, in sample order). ts/values: the series' samples (no\n"
"staleness markers); out_values float64 (0.0 where absent), out_present\n"
"bool. range_seconds divides a rate (the caller's range_ms / 1000.0).\n"
"False (outputs untouched) when ends do not ascend.");

static PyObject *
extrapolated_rate(PyObject *self, PyObject *args)
{
    Py_buffer ts, values, ends, out_values, out_present;
    long long range_ms;
    double range_seconds;
    int is_counter, is_rate;
    if (!PyArg_ParseTuple(args, "y*y*y*Ldppw*w*", &ts, &values, &ends, &range_ms,
                          &range_seconds, &is_counter, &is_rate, &out_values,
                          &out_present)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t *next_reset = NULL;
    if (check(&ts, 8, "ts") || check(&values, 8, "values") || check(&ends, 8, "ends")
            || check(&out_values, 8, "out_values")) {
        goto done;
    }
    Py_ssize_t n = ts.len / 8, k = ends.len / 8;
    if (values.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "values: length differs from ts");
        goto done;
    }
    if (out_values.len / 8 != k || out_present.len != k) {
        PyErr_SetString(PyExc_ValueError, "outputs: length differs from ends");
        goto done;
    }
    if (is_counter) {
        next_reset = scratch((size_t)(n + 2) * sizeof(Py_ssize_t));
        if (next_reset == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    const int64_t *t = ts.buf, *e = ends.buf;
    const double *v = values.buf;
    double *ov = out_values.buf;
    uint8_t *op = out_present.buf;
    int sorted;
    Py_BEGIN_ALLOW_THREADS
    sorted = ascending(e, k);
    if (sorted) {
        if (next_reset != NULL) {
            /* next_reset[m]: the first sample at or after m that is below the one
               before it (a counter reset), n if none. */
            next_reset[n] = n;
            next_reset[n + 1] = n;
            for (Py_ssize_t m = n - 1; m >= 1; m--) {
                next_reset[m] = v[m] < v[m - 1] ? m : next_reset[m + 1];
            }
        }
        Py_ssize_t lo = 0, hi = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            int64_t end = e[j];
            int64_t start = (int64_t)((uint64_t)end - (uint64_t)range_ms);
            hi = walk(t, n, hi, end);
            lo = walk(t, n, lo, start);
            if (hi - lo < 2) {
                ov[j] = 0.0;
                op[j] = 0;
                continue;
            }
            Py_ssize_t first = lo, last = hi - 1;
            double f_first = v[first];
            double res = v[last] - f_first;
            if (next_reset != NULL) {
                for (Py_ssize_t m = next_reset[first + 1]; m <= last; m = next_reset[m + 1]) {
                    res += v[m - 1];
                }
            }
            double to_start = (double)(t[first] - start) / 1000.0;
            double to_end = (double)(end - t[last]) / 1000.0;
            double sampled = (double)(t[last] - t[first]) / 1000.0;
            double avg = sampled / (double)(hi - lo - 1);
            double threshold = avg * 1.1;
            if (to_start >= threshold) {
                to_start = avg / 2;
            }
            if (is_counter && res > 0 && f_first >= 0) {
                double to_zero = sampled * (f_first / res);
                if (to_zero < to_start) {
                    to_start = to_zero;
                }
            }
            if (to_end >= threshold) {
                to_end = avg / 2;
            }
            double factor = (sampled + to_start + to_end) / sampled;
            if (is_rate) {
                factor /= range_seconds;
            }
            ov[j] = res * factor;
            op[j] = 1;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyBool_FromLong(sorted);
done:
    release((Py_buffer *[]){&ts, &values, &ends, &out_values, &out_present}, 5);
    return result;
}

PyDoc_STRVAR(window_sums_doc,
"window_sums(values, lo, hi, mean, out_total, out_exact) -> None\n\n"
"The double-double prefix sums of kernels._window_sums over one batch, in its\n"
"order of operations: for every window [lo, hi) of the concatenated values,\n"
"its sum (divided by hi - lo with mean), and whether it must be recomputed\n"
"exactly (a non-finite value in it, heavy cancellation, a non-finite result;\n"
"only for non-empty windows). lo/hi/out_* have one element per window.");

static PyObject *
window_sums(PyObject *self, PyObject *args)
{
    Py_buffer values, lo, hi, out_total, out_exact;
    int mean;
    if (!PyArg_ParseTuple(args, "y*y*y*pw*w*", &values, &lo, &hi, &mean, &out_total,
                          &out_exact)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check(&values, 8, "values") || check(&lo, 8, "lo") || check(&hi, 8, "hi")
            || check(&out_total, 8, "out_total")) {
        goto done;
    }
    Py_ssize_t n = values.len / 8, w = lo.len / 8;
    if (hi.len / 8 != w || out_total.len / 8 != w || out_exact.len != w) {
        PyErr_SetString(PyExc_ValueError, "lo/hi/outputs: lengths differ");
        goto done;
    }
    const double *v = values.buf;
    const int64_t *l = lo.buf, *h = hi.buf;
    for (Py_ssize_t j = 0; j < w; j++) {
        if (l[j] < 0 || h[j] < l[j] || h[j] > n) {
            PyErr_SetString(PyExc_ValueError, "a window lies outside the values");
            goto done;
        }
    }
    double *c = scratch((size_t)(n + 1) * 4 * sizeof(double));
    if (c == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *ce = c + (n + 1), *mag = ce + (n + 1);
    int64_t *bad = (int64_t *)(mag + (n + 1));
    double *total = out_total.buf;
    uint8_t *exact = out_exact.buf;
    Py_BEGIN_ALLOW_THREADS
    /* One pass over the samples. _finite_view: non-finite values count as zero and
       are counted apart. _dd_prefix: the running sum, and the running sum of each
       step's rounding error. The running sum of magnitudes, for the cancellation
       check, which the NumPy kernel makes only when a value is negative. */
    int finite = 1, negative = 0;
    c[0] = ce[0] = mag[0] = 0.0;
    bad[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int fin = isfinite(v[i]);
        double x = fin ? v[i] : 0.0;
        finite &= fin;
        negative |= x < 0;
        bad[i + 1] = bad[i] + !fin;
        double a = c[i], s = a + x, bb = s - a;
        c[i + 1] = s;
        ce[i + 1] = ce[i] + ((a - (s - bb)) + (x - bb));
        mag[i + 1] = mag[i] + fabs(x);
    }
    for (Py_ssize_t j = 0; j < w; j++) {
        int64_t a = l[j], b = h[j];
        double t = c[b] - c[a];
        t += ce[b] - ce[a];
        int need = !finite && bad[b] - bad[a] > 0;
        if (negative) {
            double m = mag[b] - mag[a];
            need |= m > 0 && fabs(t) * 1e10 <= m;
        }
        if (mean) {
            t /= (double)(b - a);
        }
        need |= !isfinite(t);
        total[j] = t;
        exact[j] = need && b > a;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release((Py_buffer *[]){&values, &lo, &hi, &out_total, &out_exact}, 5);
    return result;
}

static PyMethodDef methods[] = {
    {"search_right", search_right, METH_VARARGS, search_right_doc},
    {"lookup", lookup, METH_VARARGS, lookup_doc},
    {"extrapolated_rate", extrapolated_rate, METH_VARARGS, extrapolated_rate_doc},
    {"window_sums", window_sums, METH_VARARGS, window_sums_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "Walks over sorted sample times (see native.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModule_Create(&module);
}
