/* A dict lookup that gives a new (strong) reference: the value, or NULL
 * (an exception set only if the lookup failed).
 *
 * The remembered-outcome lookups (pinengine._core.recall_outcome(s)) read
 * dicts that other threads change. Under the GIL a borrowed reference is
 * enough as long as no Python code runs before it is used; a free-threaded
 * CPython has no such window: another thread may drop the value from the
 * dict at any moment, so there the reference is taken by the lookup itself
 * (PyDict_GetItemRef, 3.13+).
 */
#ifndef PE_DICT_H
#define PE_DICT_H

#include <Python.h>

static inline PyObject *pe_dict_get_ref(PyObject *d, PyObject *key)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *out = NULL;
    if (PyDict_GetItemRef(d, key, &out) < 0)
        return NULL;
    return out;
#else
    PyObject *out = PyDict_GetItemWithError(d, key);
    Py_XINCREF(out);
    return out;
#endif
}

#endif
