/* CA monitor events handed from libca's threads to one Python thread, in batches.
 *
 * Entering Python from a libca callback thread costs more than everything the forwarder does
 * with a CA update afterwards (issue 11): the ctypes trampoline, taking the GIL from the
 * thread that holds it, building the argument struct. Here libca calls C: the callback copies
 * the DBR_TIME header and values into a buffer under a mutex and returns, without the GIL.
 * One Python thread takes everything queued in one call and gets a list of
 * (slot, value, timestamp_ns, status, severity) tuples, values already numpy scalars or arrays
 * of the PV's native dtype (the same dtypes ca_convert gives). Python objects (connection
 * changes, string updates from pyepics) join the same queue with put(), so the taker sees
 * every event of a channel in the order libca produced it.
 *
 * Nothing is dropped while the queue is open: a full queue makes the libca thread wait for
 * the taker, which is what a slow pipeline did to it before. After close() events are
 * counted in `dropped` (the sources are closing too).
 *
 * The DBR_TIME layouts and libca's callback argument are declared here, as db_access.h and
 * cadef.h define them; tests/unit/test_ca_queue.py checks the offsets against libca's own
 * dbr_value_offset table and pyepics' ctypes structures, and every value against ca_events.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define ECA_NORMAL 1
#define TIME_OFFSET 14
#define EPICS_EPOCH_OFFSET_S 631152000LL
#define OBJECT_TYPE (-1)

/* cadef.h: what libca passes to a subscription's callback, by value. */
struct event_handler_args {
    void *usr;
    void *chid;
    long type;
    long count;
    const void *dbr;
    int status;
};

/* db_access.h: DBR_TIME_SHORT .. DBR_TIME_DOUBLE (native types 1..6; 0, STRING, is not read
 * here). Every dbr_time_* starts with status, severity (int16) and the stamp (2 x uint32);
 * padding puts the value at these offsets. */
static const size_t VALUE_OFFSET[7] = {12, 14, 12, 14, 15, 12, 16};
static const size_t ITEM_SIZE[7] = {40, 2, 4, 2, 1, 4, 8};

typedef struct {
    uint32_t slot;
    int16_t native;   /* native DBR type 1..6, or OBJECT_TYPE */
    uint16_t status;
    uint16_t severity;
    uint32_t count;
    int64_t ts_ns;
    size_t data;      /* offset of the values in the buffer's bytes */
    PyObject *object; /* OBJECT_TYPE only: a reference put() took */
} record;

typedef struct {
    record *records;
    size_t n, cap;
    char *bytes;
    size_t used, size;
} buffer;

struct queue;
typedef struct {
    struct queue *queue;
    uint32_t slot;
} user_arg;

#define SLOTS_PER_CHUNK 1024
#define MAX_CHUNKS 16384 /* 16M slots */

typedef struct queue {
    PyObject_HEAD
    pthread_mutex_t lock;
    pthread_cond_t filled;  /* the taker waits for events */
    pthread_cond_t drained; /* a full queue's producers wait for the taker */
    buffer fill, spare;
    int closed, taking, pinned;
    size_t max_records, max_bytes;
    unsigned long long dropped, full_waits, events;
    size_t deepest;
    user_arg *chunks[MAX_CHUNKS]; /* user arguments never move: libca holds their address */
    PyObject *scalar_types[7];    /* numpy scalar type per native DBR type */
    PyObject *dtypes[7];
    PyObject *frombuffer;
} Queue;

static int grow(buffer *b, size_t bytes) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        record *r = realloc(b->records, cap * sizeof(record));
        if (!r) return -1;
        b->records = r;
        b->cap = cap;
    }
    if (b->used + bytes > b->size) {
        size_t size = b->size ? b->size : 65536;
        while (b->used + bytes > size) size *= 2;
        char *p = realloc(b->bytes, size);
        if (!p) return -1;
        b->bytes = p;
        b->size = size;
    }
    return 0;
}

static int is_full(Queue *q, size_t bytes) {
    buffer *b = &q->fill;
    /* An empty queue takes any one event, however large. */
    return b->n && (b->n >= q->max_records || b->used + bytes > q->max_bytes);
}

/* Lock held. Waits while full; 0: room for one record of `bytes`, -1: closed or no memory. */
static int make_room(Queue *q, size_t bytes) {
    while (!q->closed && is_full(q, bytes)) {
        q->full_waits++;
        pthread_cond_wait(&q->drained, &q->lock);
    }
    if (q->closed || grow(&q->fill, bytes)) {
        q->dropped++;
        return -1;
    }
    return 0;
}

static void appended(Queue *q) {
    buffer *b = &q->fill;
    b->n++;
    q->events++;
    if (b->n > q->deepest) q->deepest = b->n;
    if (b->n == 1) pthread_cond_signal(&q->filled);
}

/* libca's thread, no GIL. */
static void on_event(struct event_handler_args args) {
    user_arg *user = args.usr;
    Queue *q = user->queue;
    long native = args.type - TIME_OFFSET;
    if (args.status != ECA_NORMAL || args.dbr == NULL) return; /* connection callback reports */
    const char *dbr = args.dbr;
    if (native < 1 || native > 6 || args.count < 0) {
        pthread_mutex_lock(&q->lock);
        q->dropped++; /* never subscribed so: counted, in case */
        pthread_mutex_unlock(&q->lock);
        return;
    }
    size_t count = (size_t)args.count;
    size_t bytes = count * ITEM_SIZE[native];
    int16_t status, severity;
    uint32_t secs, nsec;
    memcpy(&status, dbr, 2);
    memcpy(&severity, dbr + 2, 2);
    memcpy(&secs, dbr + 4, 4);
    memcpy(&nsec, dbr + 8, 4);

    pthread_mutex_lock(&q->lock);
    if (make_room(q, bytes) == 0) {
        buffer *b = &q->fill;
        record *r = &b->records[b->n];
        r->slot = user->slot;
        r->native = (int16_t)native;
        r->status = (uint16_t)status;
        r->severity = (uint16_t)severity;
        r->count = (uint32_t)count;
        r->ts_ns = ((int64_t)secs + EPICS_EPOCH_OFFSET_S) * 1000000000LL + nsec;
        r->data = b->used;
        r->object = NULL;
        memcpy(b->bytes + b->used, dbr + VALUE_OFFSET[native], bytes);
        b->used += bytes;
        appended(q);
    }
    pthread_mutex_unlock(&q->lock);
}

static PyObject *scalar(Queue *q, int native, const char *p) {
    PyObject *raw;
    switch (native) {
    case 1: { int16_t v; memcpy(&v, p, 2); raw = PyLong_FromLong(v); break; }
    case 2: { float v; memcpy(&v, p, 4); raw = PyFloat_FromDouble(v); break; }
    case 3: { uint16_t v; memcpy(&v, p, 2); raw = PyLong_FromLong(v); break; }
    case 4: raw = PyLong_FromLong((unsigned char)*p); break;
    case 5: { int32_t v; memcpy(&v, p, 4); raw = PyLong_FromLong(v); break; }
    default: { double v; memcpy(&v, p, 8); raw = PyFloat_FromDouble(v); break; }
    }
    if (!raw) return NULL;
    PyObject *value = PyObject_CallOneArg(q->scalar_types[native], raw);
    Py_DECREF(raw);
    return value;
}

static PyObject *value_of(Queue *q, const record *r, const char *bytes) {
    const char *p = bytes + r->data;
    if (r->count == 1) return scalar(q, r->native, p);
    PyObject *raw = PyByteArray_FromStringAndSize(p, (Py_ssize_t)r->count * ITEM_SIZE[r->native]);
    if (!raw) return NULL;
    PyObject *value = PyObject_CallFunctionObjArgs(q->frombuffer, raw, q->dtypes[r->native], NULL);
    Py_DECREF(raw);
    return value;
}

static PyObject *tuple_of(Queue *q, record *r, const char *bytes) {
    PyObject *value;
    if (r->native == OBJECT_TYPE) {
        value = r->object; /* the queue's reference moves to the tuple */
        r->object = NULL;
    } else {
        value = value_of(q, r, bytes);
        if (!value) return NULL;
    }
    PyObject *t = PyTuple_New(5);
    if (!t) {
        Py_DECREF(value);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, PyLong_FromUnsignedLong(r->slot));
    PyTuple_SET_ITEM(t, 1, value);
    PyTuple_SET_ITEM(t, 2, PyLong_FromLongLong(r->ts_ns));
    PyTuple_SET_ITEM(t, 3, PyLong_FromLong(r->native == OBJECT_TYPE ? -1 : r->status));
    PyTuple_SET_ITEM(t, 4, PyLong_FromLong(r->severity));
    for (int i = 0; i < 5; i++) {
        if (!PyTuple_GET_ITEM(t, i)) {
            Py_DECREF(t);
            return NULL;
        }
    }
    return t;
}

static void release_objects(buffer *b) {
    for (size_t i = 0; i < b->n; i++) Py_CLEAR(b->records[i].object);
    b->n = 0;
    b->used = 0;
}

/* ---- methods ---------------------------------------------------------------------------- */

static PyObject *Queue_take(Queue *q, PyObject *arg) {
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred()) return NULL;
    buffer got;
    int closed;
    pthread_mutex_lock(&q->lock);
    if (q->taking) {
        pthread_mutex_unlock(&q->lock);
        PyErr_SetString(PyExc_RuntimeError, "one thread takes from a CA queue");
        return NULL;
    }
    q->taking = 1;
    Py_BEGIN_ALLOW_THREADS
    if (q->fill.n == 0 && !q->closed && timeout > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        double whole = (double)(long long)timeout;
        until.tv_sec += (time_t)whole;
        until.tv_nsec += (long)((timeout - whole) * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (q->fill.n == 0 && !q->closed) {
            if (pthread_cond_timedwait(&q->filled, &q->lock, &until) == ETIMEDOUT) break;
        }
    }
    Py_END_ALLOW_THREADS
    got = q->fill;
    q->fill = q->spare;
    q->spare = (buffer){0};
    closed = q->closed;
    pthread_cond_broadcast(&q->drained);
    pthread_mutex_unlock(&q->lock);

    PyObject *list = NULL;
    if (!(got.n == 0 && closed)) {
        list = PyList_New((Py_ssize_t)got.n);
        for (size_t i = 0; list && i < got.n; i++) {
            PyObject *t = tuple_of(q, &got.records[i], got.bytes);
            if (!t) Py_CLEAR(list);
            else PyList_SET_ITEM(list, (Py_ssize_t)i, t);
        }
    } else {
        Py_INCREF(Py_None);
        list = Py_None; /* closed and empty: the taker stops */
    }
    release_objects(&got);
    if (got.size > 4 * 1024 * 1024) { /* a burst of arrays: do not keep its arena */
        free(got.bytes);
        got.bytes = NULL;
        got.size = 0;
    }
    pthread_mutex_lock(&q->lock);
    q->spare = got;
    q->taking = 0;
    pthread_mutex_unlock(&q->lock);
    return list;
}

static PyObject *Queue_put(Queue *q, PyObject *args) {
    unsigned long slot;
    PyObject *object;
    if (!PyArg_ParseTuple(args, "kO", &slot, &object)) return NULL;
    int ok;
    Py_INCREF(object);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&q->lock);
    ok = make_room(q, 0) == 0;
    if (ok) {
        buffer *b = &q->fill;
        record *r = &b->records[b->n];
        memset(r, 0, sizeof *r);
        r->slot = (uint32_t)slot;
        r->native = OBJECT_TYPE;
        r->object = object;
        appended(q);
    }
    pthread_mutex_unlock(&q->lock);
    Py_END_ALLOW_THREADS
    if (!ok) Py_DECREF(object);
    return PyBool_FromLong(ok);
}

static PyObject *Queue_user_arg(Queue *q, PyObject *arg) {
    unsigned long slot = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred()) return NULL;
    size_t chunk = slot / SLOTS_PER_CHUNK;
    if (chunk >= MAX_CHUNKS) {
        PyErr_SetString(PyExc_ValueError, "slot out of range");
        return NULL;
    }
    pthread_mutex_lock(&q->lock);
    if (!q->chunks[chunk]) {
        q->chunks[chunk] = calloc(SLOTS_PER_CHUNK, sizeof(user_arg));
        if (!q->chunks[chunk]) {
            pthread_mutex_unlock(&q->lock);
            return PyErr_NoMemory();
        }
    }
    user_arg *u = &q->chunks[chunk][slot % SLOTS_PER_CHUNK];
    u->queue = q;
    u->slot = (uint32_t)slot;
    int pin = !q->pinned;
    q->pinned = 1;
    pthread_mutex_unlock(&q->lock);
    /* libca may call back with this address until it is finalised, even at interpreter exit:
     * a queue that gave one out is never freed (one per CA factory, so one per process). */
    if (pin) Py_INCREF(q);
    return PyLong_FromVoidPtr(u);
}

static PyObject *Queue_inject(Queue *q, PyObject *args) {
    /* What libca would call: a test's DBR_TIME buffer through the real callback. */
    unsigned long slot;
    long type, count;
    int status = ECA_NORMAL;
    Py_buffer dbr;
    if (!PyArg_ParseTuple(args, "klly*|i", &slot, &type, &count, &dbr, &status)) return NULL;
    PyObject *address = Queue_user_arg(q, PyTuple_GET_ITEM(args, 0));
    if (!address) {
        PyBuffer_Release(&dbr);
        return NULL;
    }
    struct event_handler_args a = {PyLong_AsVoidPtr(address), NULL, type, count, dbr.buf, status};
    Py_DECREF(address);
    Py_BEGIN_ALLOW_THREADS
    on_event(a);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dbr);
    Py_RETURN_NONE;
}

static PyObject *Queue_close(Queue *q, PyObject *unused) {
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->filled);
    pthread_cond_broadcast(&q->drained);
    pthread_mutex_unlock(&q->lock);
    Py_RETURN_NONE;
}

static PyObject *Queue_stats(Queue *q, PyObject *unused) {
    pthread_mutex_lock(&q->lock);
    unsigned long long events = q->events, dropped = q->dropped, waits = q->full_waits;
    size_t deepest = q->deepest, queued = q->fill.n;
    pthread_mutex_unlock(&q->lock);
    return Py_BuildValue("{sKsKsKsnsn}", "events", events, "dropped", dropped, "full_waits",
                         waits, "deepest", (Py_ssize_t)deepest, "queued", (Py_ssize_t)queued);
}

static int Queue_init(Queue *q, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"scalar_types", "dtypes", "frombuffer", "max_records", "max_bytes",
                            NULL};
    PyObject *types, *dtypes, *frombuffer;
    Py_ssize_t max_records = 65536, max_bytes = 64 * 1024 * 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|nn", names, &types, &dtypes, &frombuffer,
                                     &max_records, &max_bytes))
        return -1;
    for (int native = 1; native <= 6; native++) {
        PyObject *key = PyLong_FromLong(native);
        PyObject *t = PyObject_GetItem(types, key);
        PyObject *d = t ? PyObject_GetItem(dtypes, key) : NULL;
        Py_DECREF(key);
        if (!d) {
            Py_XDECREF(t);
            return -1;
        }
        Py_XSETREF(q->scalar_types[native], t);
        Py_XSETREF(q->dtypes[native], d);
    }
    Py_INCREF(frombuffer);
    Py_XSETREF(q->frombuffer, frombuffer);
    q->max_records = max_records > 0 ? (size_t)max_records : 1;
    q->max_bytes = max_bytes > 0 ? (size_t)max_bytes : 1;
    return 0;
}

static PyObject *Queue_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    Queue *q = (Queue *)type->tp_alloc(type, 0); /* zeroed */
    if (!q) return NULL;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->filled, NULL);
    pthread_cond_init(&q->drained, NULL);
    return (PyObject *)q;
}

static void Queue_dealloc(Queue *q) {
    release_objects(&q->fill);
    release_objects(&q->spare);
    free(q->fill.records);
    free(q->fill.bytes);
    free(q->spare.records);
    free(q->spare.bytes);
    /* Only a queue that never gave out a user argument gets here (see user_arg). */
    for (int i = 1; i <= 6; i++) {
        Py_CLEAR(q->scalar_types[i]);
        Py_CLEAR(q->dtypes[i]);
    }
    Py_CLEAR(q->frombuffer);
    Py_TYPE(q)->tp_free((PyObject *)q);
}

static PyMethodDef Queue_methods[] = {
    {"take", (PyCFunction)Queue_take, METH_O,
     "take(timeout_s) -> list of (slot, value, timestamp_ns, status, severity), [] after the "
     "timeout, None once closed and empty; status -1: value is an object put()"},
    {"put", (PyCFunction)Queue_put, METH_VARARGS,
     "put(slot, object) -> False once closed: the object joins the events in order"},
    {"user_arg", (PyCFunction)Queue_user_arg, METH_O,
     "user_arg(slot) -> address for ca_create_subscription's user argument"},
    {"inject", (PyCFunction)Queue_inject, METH_VARARGS,
     "inject(slot, dbr_type, count, dbr_bytes[, status]): call the libca callback (tests)"},
    {"close", (PyCFunction)Queue_close, METH_NOARGS, "wake the taker; later events are dropped"},
    {"stats", (PyCFunction)Queue_stats, METH_NOARGS, "counters"},
    {NULL}};

static PyTypeObject QueueType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "forwarder.sources._ca_queue.Queue",
    .tp_basicsize = sizeof(Queue),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "CA monitor events from libca's threads to one taker thread",
    .tp_new = Queue_new,
    .tp_init = (initproc)Queue_init,
    .tp_dealloc = (destructor)Queue_dealloc,
    .tp_methods = Queue_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_ca_queue", .m_size = -1};

PyMODINIT_FUNC PyInit__ca_queue(void) {
    if (PyType_Ready(&QueueType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&QueueType);
    if (PyModule_AddObject(m, "Queue", (PyObject *)&QueueType) < 0 ||
        PyModule_AddObject(m, "CALLBACK", PyLong_FromVoidPtr((void *)on_event)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
