/* ingest._fastrows: the collector's hot path for JSON payloads, in C.
 *
 * rows(payload, gateway, sensor, received_ms, registry, limits, oldest_ms, newest_ms,
 *      times, to_time, slots, copy) -> list of row tuples, or None
 *
 * One pass over the bytes: parse, look each sensor up in the registry snapshot, check its
 * gateway, the reading's time window, seq, and each value against its kind's catalogue
 * range, and build the store's rows (time, sensor id, seq, v0 .. v{slots-1}).  It accepts
 * only the plain form the simulator and most devices send: JSON whitespace, strings of
 * printable ASCII without escapes, readings with no keys but "values", "ts" and "seq", no
 * key twice, integers of at most 18 digits.  Anything else, and anything not storable, is
 * None: ingest.fastdecode.rows then takes the typed Python path, and the full path after it
 * says what is wrong.  So this decides nothing the Python paths would decide differently
 * (tests/ingest/test_fastrows_native.py checks that on generated and mutated payloads).
 *
 * gateway: the gateway id of a gateway topic (payload {sensor: [reading, ...]}), else None;
 * sensor: the sensor id of a telemetry topic (payload reading or [reading, ...]), else None;
 * registry: {sensor id: object with .id, .kind, .gateway_id};
 * limits: {kind: ((metric name as bytes, row index, min, max), ...)};
 * times: {epoch ms: datetime} cache, filled with to_time(ms);
 * copy: a bytearray, or None.  When given and rows are returned, the same rows are appended
 * to it in PostgreSQL's binary COPY row format, as columns (timestamptz, int4, int8,
 * float8 x slots), so the store sends them without formatting each row again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_METRICS 32
#define MAX_ROW 64
#define PG_EPOCH_MS 946684800000LL /* 2000-01-01 UTC, PostgreSQL's timestamp zero */

static PyObject *s_id, *s_kind, *s_gateway_id;

typedef struct {
    const char *p, *end;
} Cur;

typedef struct {
    const char *name;
    Py_ssize_t len;
    Py_ssize_t index;
    double lo, hi;
} Metric;

typedef struct {               /* what the whole call shares */
    PyObject *registry, *limits, *times, *to_time, *gateway, *out;
    long long received, oldest, newest;
    Py_ssize_t width;          /* 3 + slots */
    long long last_ms;         /* the last time looked up, and its datetime (borrowed) */
    PyObject *last_t;
    PyObject *kind;            /* the kind whose metrics are in m[] (a reference) */
    Metric m[MAX_METRICS];
    Py_ssize_t nm;
    int copy;                  /* encode COPY rows into buf */
    int32_t rid;               /* the current sensor's id, for the COPY row */
    char *buf;
    size_t len, cap;
} Ctx;

static inline void put16(char *p, uint16_t v) {
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static inline void put32(char *p, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (char)v;
}

static inline void put64(char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (char)v;
}

/* One row in binary COPY format: field count, then per field a length (-1: NULL) and data. */
static int encode(Ctx *x, long long ts, int has_seq, long long seq, const signed char *set,
                  const double *val) {
    size_t need = 2 + 12 + 8 + 12 + 12 * (size_t)(x->width - 3);
    if (x->len + need > x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 4096;
        while (cap < x->len + need)
            cap *= 2;
        char *b = PyMem_Realloc(x->buf, cap);
        if (b == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        x->buf = b;
        x->cap = cap;
    }
    char *p = x->buf + x->len;
    put16(p, (uint16_t)x->width);
    put32(p + 2, 8);
    put64(p + 6, (uint64_t)((ts - PG_EPOCH_MS) * 1000));
    put32(p + 14, 4);
    put32(p + 18, (uint32_t)x->rid);
    p += 22;
    if (has_seq) {
        put32(p, 8);
        put64(p + 4, (uint64_t)seq);
        p += 12;
    } else {
        put32(p, 0xFFFFFFFFu);
        p += 4;
    }
    for (Py_ssize_t i = 3; i < x->width; i++) {
        if (set[i]) {
            uint64_t bits;
            memcpy(&bits, &val[i], 8);
            put32(p, 8);
            put64(p + 4, bits);
            p += 12;
        } else {
            put32(p, 0xFFFFFFFFu);
            p += 4;
        }
    }
    x->len = (size_t)(p - x->buf);
    return 1;
}

static inline void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static inline int eat(Cur *c, char ch) {
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A string of printable ASCII without escapes; 0 for anything else. */
static int plain_string(Cur *c, const char **s, Py_ssize_t *n) {
    ws(c);
    if (c->p >= c->end || *c->p != '"')
        return 0;
    const char *q = c->p + 1;
    for (; q < c->end; q++) {
        unsigned char ch = (unsigned char)*q;
        if (ch == '"') {
            *s = c->p + 1;
            *n = q - *s;
            c->p = q + 1;
            return 1;
        }
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return 0;
    }
    return 0;
}

static inline int is_digit(const char *q, const char *e) { return q < e && *q >= '0' && *q <= '9'; }

/* The length of the JSON number at the cursor (0: none); *integral when it has no fraction
 * or exponent.  The cursor does not move. */
static Py_ssize_t number(Cur *c, int *integral) {
    ws(c);
    const char *q = c->p, *e = c->end;
    if (q < e && *q == '-')
        q++;
    if (!is_digit(q, e))
        return 0;
    if (*q == '0')
        q++;
    else
        while (is_digit(q, e))
            q++;
    *integral = 1;
    if (q < e && *q == '.') {
        q++;
        if (!is_digit(q, e))
            return 0;
        while (is_digit(q, e))
            q++;
        *integral = 0;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < e && (*q == '+' || *q == '-'))
            q++;
        if (!is_digit(q, e))
            return 0;
        while (is_digit(q, e))
            q++;
        *integral = 0;
    }
    return q - c->p;
}

/* An integer of at most 18 digits (so it fits in 64 bits), or null (*given = 0). */
static int int_or_null(Cur *c, long long *v, int *given) {
    ws(c);
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
        c->p += 4;
        *given = 0;
        return 1;
    }
    int integral;
    Py_ssize_t n = number(c, &integral);
    if (!n || !integral)
        return 0;
    const char *q = c->p;
    int neg = *q == '-';
    if (n - neg > 18)
        return 0;
    long long x = 0;
    for (q += neg; q < c->p + n; q++)
        x = x * 10 + (*q - '0');
    *v = neg ? -x : x;
    *given = 1;
    c->p += n;
    return 1;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number as a double, rounded exactly as Python's float() rounds it.  Most readings
 * take Clinger's fast path: a mantissa below 2**53 and a power of ten up to 1e22 are both
 * exact, so one IEEE multiplication or division rounds correctly.  The rest: PyOS's strtod. */
static int real(Cur *c, double *v) {
    int integral;
    Py_ssize_t n = number(c, &integral);
    if (!n)
        return 0;
    const char *q = c->p, *e = c->p + n;
    int neg = *q == '-', digits = 0;
    uint64_t m = 0;
    long exp10 = 0;
    q += neg;
    for (; q < e && *q != '.' && *q != 'e' && *q != 'E'; q++, digits++)
        m = m * 10 + (uint64_t)(*q - '0');
    if (q < e && *q == '.')
        for (q++; q < e && *q != 'e' && *q != 'E'; q++, digits++, exp10--)
            m = m * 10 + (uint64_t)(*q - '0');
    if (q < e) { /* an exponent: the slow path decides */
        digits = 99;
    }
    if (digits <= 19 && m <= (1ULL << 53) && exp10 >= -22) {
        double d = (double)m;
        d = exp10 < 0 ? d / POW10[-exp10] : d;
        *v = neg ? -d : d;
        c->p += n;
        return 1;
    }
    char buf[64];
    if (n >= (Py_ssize_t)sizeof buf)
        return 0;
    memcpy(buf, c->p, n);
    buf[n] = 0;
    char *endp;
    *v = PyOS_string_to_double(buf, &endp, NULL); /* no exception on overflow: +-inf */
    if (*v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (endp != buf + n)
        return 0;
    c->p += n;
    return 1;
}

/* Load the metrics of `kind` into ctx->m (kept while the next sensor has the same kind). */
static int load_kind(Ctx *x, PyObject *kind) {
    if (kind == x->kind)
        return 1;
    PyObject *ms = PyDict_GetItemWithError(x->limits, kind);
    if (ms == NULL || !PyTuple_Check(ms) || PyTuple_GET_SIZE(ms) > MAX_METRICS)
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(ms);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyTuple_GET_ITEM(ms, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 4 || !PyBytes_Check(PyTuple_GET_ITEM(t, 0)))
            return 0;
        Metric *m = &x->m[i];
        m->name = PyBytes_AS_STRING(PyTuple_GET_ITEM(t, 0));
        m->len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(t, 0));
        m->index = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 1));
        m->lo = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 2));
        m->hi = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 3));
        if (PyErr_Occurred() || m->index < 3 || m->index >= x->width)
            return 0;
    }
    x->nm = n;
    Py_INCREF(kind);
    Py_XSETREF(x->kind, kind);
    return 1;
}

/* The datetime of epoch ms `ms`, from the times cache or to_time (borrowed; NULL: error). */
static PyObject *time_of(Ctx *x, long long ms) {
    if (x->last_t != NULL && ms == x->last_ms)
        return x->last_t;
    PyObject *key = PyLong_FromLongLong(ms);
    if (key == NULL)
        return NULL;
    PyObject *t = PyDict_GetItemWithError(x->times, key);
    if (t == NULL && !PyErr_Occurred()) {
        PyObject *made = PyObject_CallOneArg(x->to_time, key);
        if (made != NULL && PyDict_SetItem(x->times, key, made) == 0)
            t = made;
        Py_XDECREF(made); /* the cache holds it */
    }
    Py_DECREF(key);
    if (t != NULL) {
        x->last_ms = ms;
        x->last_t = t;
    }
    return t;
}

/* One reading object -> one row appended to ctx->out.  0: not storable or not plain. */
static int reading(Ctx *x, Cur *c, PyObject *rid) {
    if (!eat(c, '{'))
        return 0;
    long long ts = 0, seq = 0;
    int has_ts = 0, has_seq = 0, seen_ts = 0, seen_seq = 0, seen_values = 0, nvals = 0;
    double val[MAX_ROW];
    signed char set[MAX_ROW];
    memset(set, 0, sizeof set);
    if (eat(c, '}'))
        return 0;
    for (;;) {
        const char *k;
        Py_ssize_t kn;
        if (!plain_string(c, &k, &kn) || !eat(c, ':'))
            return 0;
        if (kn == 2 && memcmp(k, "ts", 2) == 0) {
            if (seen_ts++ || !int_or_null(c, &ts, &has_ts))
                return 0;
        } else if (kn == 3 && memcmp(k, "seq", 3) == 0) {
            if (seen_seq++ || !int_or_null(c, &seq, &has_seq))
                return 0;
        } else if (kn == 6 && memcmp(k, "values", 6) == 0) {
            if (seen_values++ || !eat(c, '{') || eat(c, '}'))
                return 0;
            for (;;) {
                const char *name;
                Py_ssize_t nn;
                if (!plain_string(c, &name, &nn) || !eat(c, ':'))
                    return 0;
                const Metric *m = NULL;
                for (Py_ssize_t i = 0; i < x->nm; i++)
                    if (x->m[i].len == nn && memcmp(x->m[i].name, name, nn) == 0) {
                        m = &x->m[i];
                        break;
                    }
                double v;
                if (m == NULL || set[m->index] || !real(c, &v))
                    return 0; /* unknown metric, a metric twice, not a number */
                if (!(m->lo <= v && v <= m->hi) || !isfinite(v))
                    return 0;
                val[m->index] = v;
                set[m->index] = 1;
                nvals++;
                if (eat(c, ','))
                    continue;
                if (eat(c, '}'))
                    break;
                return 0;
            }
        } else {
            return 0; /* a key the typed path would ignore: let it decide */
        }
        if (eat(c, ','))
            continue;
        if (eat(c, '}'))
            break;
        return 0;
    }
    if (!nvals)
        return 0;
    if (!has_ts)
        ts = x->received;
    if (ts < x->oldest || ts > x->newest || (has_seq && seq < 0))
        return 0;
    if (x->copy && encode(x, ts, has_seq, seq, set, val) < 0)
        return -1;
    PyObject *t = time_of(x, ts);
    if (t == NULL)
        return -1;
    PyObject *row = PyTuple_New(x->width);
    if (row == NULL)
        return -1;
    Py_INCREF(t);
    PyTuple_SET_ITEM(row, 0, t);
    Py_INCREF(rid);
    PyTuple_SET_ITEM(row, 1, rid);
    PyObject *s = has_seq ? PyLong_FromLongLong(seq) : Py_NewRef(Py_None);
    if (s == NULL) {
        Py_DECREF(row);
        return -1;
    }
    PyTuple_SET_ITEM(row, 2, s);
    for (Py_ssize_t i = 3; i < x->width; i++) {
        PyObject *v = set[i] ? PyFloat_FromDouble(val[i]) : Py_NewRef(Py_None);
        if (v == NULL) {
            Py_DECREF(row);
            return -1;
        }
        PyTuple_SET_ITEM(row, i, v);
    }
    /* only objects the garbage collector does not track inside (a datetime, ints, floats):
     * no cycle can pass through the row, as its first pass over it would conclude, so it
     * need not walk every row */
    if (!PyObject_GC_IsTracked(t) && !PyObject_GC_IsTracked(rid))
        PyObject_GC_UnTrack(row);
    int rc = PyList_Append(x->out, row);
    Py_DECREF(row);
    return rc == 0 ? 1 : -1;
}

/* The registry entry of `sid`: its id (borrowed from `reg`'s attribute, held in *hold) and
 * its kind's metrics loaded.  0: unknown, behind another gateway, or a kind without limits. */
static int sensor(Ctx *x, PyObject *sid, PyObject **hold) {
    PyObject *reg = PyDict_GetItemWithError(x->registry, sid);
    if (reg == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (x->gateway != Py_None) {
        PyObject *gid = PyObject_GetAttr(reg, s_gateway_id);
        if (gid == NULL)
            return -1;
        int same = PyObject_RichCompareBool(gid, x->gateway, Py_EQ);
        Py_DECREF(gid);
        if (same != 1)
            return same < 0 ? -1 : 0;
    }
    PyObject *kind = PyObject_GetAttr(reg, s_kind);
    if (kind == NULL)
        return -1;
    int ok = load_kind(x, kind);
    Py_DECREF(kind);
    if (!ok)
        return PyErr_Occurred() ? -1 : 0;
    *hold = PyObject_GetAttr(reg, s_id);
    if (*hold == NULL)
        return -1;
    if (x->copy) { /* the store's int4 column */
        long id = PyLong_Check(*hold) ? PyLong_AsLong(*hold) : -1;
        if (id < INT32_MIN || id > INT32_MAX || (id == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        x->rid = (int32_t)id;
    }
    return 1;
}

/* `reading` or `[reading, ...]` (at least one) for the sensor with id `rid`. */
static int readings(Ctx *x, Cur *c, PyObject *rid, int list_allowed, int single_allowed) {
    ws(c);
    if (c->p < c->end && *c->p == '[' && list_allowed) {
        c->p++;
        for (;;) {
            int r = reading(x, c, rid);
            if (r != 1)
                return r;
            if (eat(c, ','))
                continue;
            return eat(c, ']');
        }
    }
    return single_allowed ? reading(x, c, rid) : 0;
}

static PyObject *ascii_str(const char *s, Py_ssize_t n) {
    PyObject *u = PyUnicode_New(n, 127);
    if (u != NULL)
        memcpy(PyUnicode_1BYTE_DATA(u), s, n);
    return u;
}

static int gateway_doc(Ctx *x, Cur *c) {
    if (!eat(c, '{') || eat(c, '}'))
        return 0;
    PyObject *seen = PySet_New(NULL);
    if (seen == NULL)
        return -1;
    int r;
    for (;;) {
        const char *s;
        Py_ssize_t n;
        if (!plain_string(c, &s, &n) || !eat(c, ':')) {
            r = 0;
            break;
        }
        PyObject *sid = ascii_str(s, n), *rid = NULL;
        if (sid == NULL) {
            r = -1;
            break;
        }
        r = PySet_Contains(seen, sid); /* a sensor twice: the typed path keeps the last */
        if (r == 0)
            r = PySet_Add(seen, sid) == 0 ? sensor(x, sid, &rid) : -1;
        else if (r == 1)
            r = 0;
        Py_DECREF(sid);
        if (r == 1)
            r = readings(x, c, rid, 1, 0);
        Py_XDECREF(rid);
        if (r != 1)
            break;
        if (eat(c, ','))
            continue;
        r = eat(c, '}');
        break;
    }
    Py_DECREF(seen);
    return r;
}

static PyObject *rows(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "rows() takes 12 arguments");
        return NULL;
    }
    PyObject *payload = args[0], *sid = args[2], *copy = args[11];
    Ctx x = {.gateway = args[1], .registry = args[4], .limits = args[5], .times = args[8],
             .to_time = args[9]};
    x.received = PyLong_AsLongLong(args[3]);
    x.oldest = PyLong_AsLongLong(args[6]);
    x.newest = PyLong_AsLongLong(args[7]);
    x.width = 3 + PyLong_AsSsize_t(args[10]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(payload) || !PyDict_Check(x.registry) || !PyDict_Check(x.limits) ||
        !PyDict_Check(x.times) || (x.gateway != Py_None && !PyUnicode_Check(x.gateway)) ||
        (x.gateway == Py_None) == (sid == Py_None) || x.width < 4 || x.width > MAX_ROW ||
        (copy != Py_None && !PyByteArray_Check(copy))) {
        PyErr_SetString(PyExc_TypeError, "rows(): bad arguments");
        return NULL;
    }
    Cur c = {PyBytes_AS_STRING(payload), PyBytes_AS_STRING(payload) + PyBytes_GET_SIZE(payload)};
    x.copy = copy != Py_None;
    x.out = PyList_New(0);
    if (x.out == NULL)
        return NULL;
    int r;
    if (x.gateway != Py_None) {
        r = gateway_doc(&x, &c);
    } else {
        PyObject *rid = NULL;
        r = sensor(&x, sid, &rid);
        if (r == 1)
            r = readings(&x, &c, rid, 1, 1);
        Py_XDECREF(rid);
    }
    Py_XDECREF(x.kind);
    if (r == 1) {
        ws(&c);
        r = c.p == c.end;
    }
    if (r == 1 && x.copy) { /* only a message taken whole adds to the COPY data */
        Py_ssize_t at = PyByteArray_GET_SIZE(copy);
        if (PyByteArray_Resize(copy, at + (Py_ssize_t)x.len) == 0)
            memcpy(PyByteArray_AS_STRING(copy) + at, x.buf, x.len);
        else
            r = -1;
    }
    PyMem_Free(x.buf);
    if (r == 1)
        return x.out;
    Py_DECREF(x.out);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"rows", (PyCFunction)(void (*)(void))rows, METH_FASTCALL,
     "rows(payload, gateway, sensor, received_ms, registry, limits, oldest_ms, newest_ms, "
     "times, to_time, slots, copy) -> list of row tuples, or None (see the module source)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastrows",
                                    "The collector's JSON hot path in C (see ingest.fastdecode).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fastrows(void) {
    s_id = PyUnicode_InternFromString("id");
    s_kind = PyUnicode_InternFromString("kind");
    s_gateway_id = PyUnicode_InternFromString("gateway_id");
    if (s_id == NULL || s_kind == NULL || s_gateway_id == NULL)
        return NULL;
    return PyModule_Create(&module);
}
