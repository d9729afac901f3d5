/*
 * siblingfs_sys: the few Linux file system calls that Node's fs module does not offer.
 *
 * Every function is synchronous. Failures throw an Error shaped like Node's fs errors
 * (message "CODE: description, syscall 'path'", code, negative errno, syscall, path and,
 * for renames, dest). Wrong argument types throw TypeError, out-of-range numbers RangeError.
 *
 * Layout: error helpers, argument helpers, then one function per system call, then the
 * module's exports. The TypeScript side (src/sys/native.ts) is the only user.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <node_api.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif

/* Largest integer a JS number holds exactly (Number.MAX_SAFE_INTEGER). */
#define MAX_SAFE ((int64_t)9007199254740991LL)

/* ---------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------- */

#define ERRNO_NAME(e) { e, #e }
static const struct {
  int num;
  const char *name;
} errno_names[] = {
  ERRNO_NAME(EPERM), ERRNO_NAME(ENOENT), ERRNO_NAME(ESRCH), ERRNO_NAME(EINTR),
  ERRNO_NAME(EIO), ERRNO_NAME(ENXIO), ERRNO_NAME(E2BIG), ERRNO_NAME(ENOEXEC),
  ERRNO_NAME(EBADF), ERRNO_NAME(ECHILD), ERRNO_NAME(EAGAIN), ERRNO_NAME(ENOMEM),
  ERRNO_NAME(EACCES), ERRNO_NAME(EFAULT), ERRNO_NAME(ENOTBLK), ERRNO_NAME(EBUSY),
  ERRNO_NAME(EEXIST), ERRNO_NAME(EXDEV), ERRNO_NAME(ENODEV), ERRNO_NAME(ENOTDIR),
  ERRNO_NAME(EISDIR), ERRNO_NAME(EINVAL), ERRNO_NAME(ENFILE), ERRNO_NAME(EMFILE),
  ERRNO_NAME(ENOTTY), ERRNO_NAME(ETXTBSY), ERRNO_NAME(EFBIG), ERRNO_NAME(ENOSPC),
  ERRNO_NAME(ESPIPE), ERRNO_NAME(EROFS), ERRNO_NAME(EMLINK), ERRNO_NAME(EPIPE),
  ERRNO_NAME(EDOM), ERRNO_NAME(ERANGE), ERRNO_NAME(EDEADLK), ERRNO_NAME(ENAMETOOLONG),
  ERRNO_NAME(ENOLCK), ERRNO_NAME(ENOSYS), ERRNO_NAME(ENOTEMPTY), ERRNO_NAME(ELOOP),
  ERRNO_NAME(ENOMSG), ERRNO_NAME(EIDRM), ERRNO_NAME(ECHRNG), ERRNO_NAME(EL2NSYNC),
  ERRNO_NAME(EL3HLT), ERRNO_NAME(EL3RST), ERRNO_NAME(ELNRNG), ERRNO_NAME(EUNATCH),
  ERRNO_NAME(ENOCSI), ERRNO_NAME(EL2HLT), ERRNO_NAME(EBADE), ERRNO_NAME(EBADR),
  ERRNO_NAME(EXFULL), ERRNO_NAME(ENOANO), ERRNO_NAME(EBADRQC), ERRNO_NAME(EBADSLT),
  ERRNO_NAME(EBFONT), ERRNO_NAME(ENOSTR), ERRNO_NAME(ENODATA), ERRNO_NAME(ETIME),
  ERRNO_NAME(ENOSR), ERRNO_NAME(ENONET), ERRNO_NAME(ENOPKG), ERRNO_NAME(EREMOTE),
  ERRNO_NAME(ENOLINK), ERRNO_NAME(EADV), ERRNO_NAME(ESRMNT), ERRNO_NAME(ECOMM),
  ERRNO_NAME(EPROTO), ERRNO_NAME(EMULTIHOP), ERRNO_NAME(EDOTDOT), ERRNO_NAME(EBADMSG),
  ERRNO_NAME(EOVERFLOW), ERRNO_NAME(ENOTUNIQ), ERRNO_NAME(EBADFD), ERRNO_NAME(EREMCHG),
  ERRNO_NAME(ELIBACC), ERRNO_NAME(ELIBBAD), ERRNO_NAME(ELIBSCN), ERRNO_NAME(ELIBMAX),
  ERRNO_NAME(ELIBEXEC), ERRNO_NAME(EILSEQ), ERRNO_NAME(ERESTART), ERRNO_NAME(ESTRPIPE),
  ERRNO_NAME(EUSERS), ERRNO_NAME(ENOTSOCK), ERRNO_NAME(EDESTADDRREQ), ERRNO_NAME(EMSGSIZE),
  ERRNO_NAME(EPROTOTYPE), ERRNO_NAME(ENOPROTOOPT), ERRNO_NAME(EPROTONOSUPPORT),
  ERRNO_NAME(ESOCKTNOSUPPORT), ERRNO_NAME(EOPNOTSUPP), ERRNO_NAME(EPFNOSUPPORT),
  ERRNO_NAME(EAFNOSUPPORT), ERRNO_NAME(EADDRINUSE), ERRNO_NAME(EADDRNOTAVAIL),
  ERRNO_NAME(ENETDOWN), ERRNO_NAME(ENETUNREACH), ERRNO_NAME(ENETRESET),
  ERRNO_NAME(ECONNABORTED), ERRNO_NAME(ECONNRESET), ERRNO_NAME(ENOBUFS), ERRNO_NAME(EISCONN),
  ERRNO_NAME(ENOTCONN), ERRNO_NAME(ESHUTDOWN), ERRNO_NAME(ETOOMANYREFS),
  ERRNO_NAME(ETIMEDOUT), ERRNO_NAME(ECONNREFUSED), ERRNO_NAME(EHOSTDOWN),
  ERRNO_NAME(EHOSTUNREACH), ERRNO_NAME(EALREADY), ERRNO_NAME(EINPROGRESS),
  ERRNO_NAME(ESTALE), ERRNO_NAME(EUCLEAN), ERRNO_NAME(ENOTNAM), ERRNO_NAME(ENAVAIL),
  ERRNO_NAME(EISNAM), ERRNO_NAME(EREMOTEIO), ERRNO_NAME(EDQUOT), ERRNO_NAME(ENOMEDIUM),
  ERRNO_NAME(EMEDIUMTYPE), ERRNO_NAME(ECANCELED), ERRNO_NAME(ENOKEY),
  ERRNO_NAME(EKEYEXPIRED), ERRNO_NAME(EKEYREVOKED), ERRNO_NAME(EKEYREJECTED),
  ERRNO_NAME(EOWNERDEAD), ERRNO_NAME(ENOTRECOVERABLE), ERRNO_NAME(ERFKILL),
  ERRNO_NAME(EHWPOISON),
};
#undef ERRNO_NAME

/* The symbolic name of errno value `err`; "EUNKNOWN_<n>" (written to `buf`) if it has none. */
static const char *errno_code(int err, char *buf, size_t size)
{
  for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++) {
    if (errno_names[i].num == err) return errno_names[i].name;
  }
  snprintf(buf, size, "EUNKNOWN_%d", err);
  return buf;
}

/*
 * Throws a Node-style fs error for errno value `err` from `syscall`. `path` and `dest` may
 * be NULL (fd-based calls have no path; only renames have a dest).
 */
static void throw_errno(napi_env env, int err, const char *syscall, const char *path,
                        const char *dest)
{
  char code_buf[32], desc_buf[256];
  const char *code = errno_code(err, code_buf, sizeof code_buf);
  /* GNU strerror_r: returns a pointer to the text, which may or may not be desc_buf. */
  const char *text = strerror_r(err, desc_buf, sizeof desc_buf);
  char desc[256];
  snprintf(desc, sizeof desc, "%s", text);
  /* "No such file or directory" -> "no such file or directory", as Node writes it. */
  if (desc[0] >= 'A' && desc[0] <= 'Z' && !(desc[1] >= 'A' && desc[1] <= 'Z')) desc[0] += 'a' - 'A';

  char *msg = NULL;
  int n;
  if (path && dest) n = asprintf(&msg, "%s: %s, %s '%s' -> '%s'", code, desc, syscall, path, dest);
  else if (path) n = asprintf(&msg, "%s: %s, %s '%s'", code, desc, syscall, path);
  else n = asprintf(&msg, "%s: %s, %s", code, desc, syscall);
  if (n < 0) msg = NULL;

  napi_value code_v, msg_v, error, v;
  if (msg == NULL ||
      napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) != napi_ok ||
      napi_create_error(env, code_v, msg_v, &error) != napi_ok ||
      napi_create_int32(env, -err, &v) != napi_ok ||
      napi_set_named_property(env, error, "errno", v) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_named_property(env, error, "syscall", v) != napi_ok ||
      (path && (napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v) != napi_ok ||
                napi_set_named_property(env, error, "path", v) != napi_ok)) ||
      (dest && (napi_create_string_utf8(env, dest, NAPI_AUTO_LENGTH, &v) != napi_ok ||
                napi_set_named_property(env, error, "dest", v) != napi_ok)) ||
      napi_throw(env, error) != napi_ok) {
    /* Could not build the full error: throw at least the code and the text. */
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) {
      napi_throw_error(env, code, msg ? msg : desc);
    }
  }
  free(msg);
}

/*
 * Returns true (and makes sure an exception is pending) if an N-API call failed.
 * Must run right after the call, before any other N-API call overwrites the error info.
 */
static bool napi_failed(napi_env env, napi_status status)
{
  if (status == napi_ok) return false;
  const napi_extended_error_info *info = NULL;
  const char *text = "N-API call failed";
  if (napi_get_last_error_info(env, &info) == napi_ok && info && info->error_message) {
    text = info->error_message;
  }
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) {
    napi_throw_error(env, "ERR_NAPI", text);
  }
  return true;
}

/* For functions with cleanup to do: on failure, jump to their `out:` label. */
#define CHECK(call)                              \
  do {                                           \
    if (napi_failed(env, (call))) goto out;      \
  } while (0)

static void throw_enomem(napi_env env)
{
  napi_throw_error(env, "ENOMEM", "ENOMEM: out of memory");
}

/* ---------------------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------------------- */

static const char *type_name(napi_valuetype t)
{
  switch (t) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_object: return "object";
    case napi_function: return "function";
    case napi_external: return "external";
    case napi_bigint: return "bigint";
  }
  return "unknown";
}

/* Fills argv[0..n) (missing arguments read as undefined). */
static bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv)
{
  size_t argc = n;
  return !napi_failed(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
}

/* Throws TypeError ERR_INVALID_ARG_TYPE unless `v` has type `want`. */
static bool expect_type(napi_env env, napi_value v, napi_valuetype want, const char *arg)
{
  napi_valuetype t;
  if (napi_failed(env, napi_typeof(env, v, &t))) return false;
  if (t == want) return true;
  char msg[160];
  snprintf(msg, sizeof msg, "The \"%s\" argument must be of type %s. Received type %s",
           arg, type_name(want), type_name(t));
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return false;
}

/* A string argument as a malloc'd UTF-8 C string (caller frees), or NULL with an exception. */
static char *arg_string(napi_env env, napi_value v, const char *arg)
{
  size_t len, got;
  if (!expect_type(env, v, napi_string, arg)) return NULL;
  if (napi_failed(env, napi_get_value_string_utf8(env, v, NULL, 0, &len))) return NULL;
  char *s = malloc(len + 1);
  if (!s) {
    throw_enomem(env);
    return NULL;
  }
  if (napi_failed(env, napi_get_value_string_utf8(env, v, s, len + 1, &got))) {
    free(s);
    return NULL;
  }
  if (strlen(s) != got) {
    char msg[160];
    snprintf(msg, sizeof msg, "The argument \"%s\" must be a string without null bytes", arg);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    free(s);
    return NULL;
  }
  return s;
}

/* An integer-valued number argument within [min, max] (both within +-MAX_SAFE). */
static bool arg_int64(napi_env env, napi_value v, const char *arg, int64_t min, int64_t max,
                      int64_t *out)
{
  double d;
  if (!expect_type(env, v, napi_number, arg)) return false;
  if (napi_failed(env, napi_get_value_double(env, v, &d))) return false;
  /* The range test comes first (it also rejects NaN), so the cast below is defined. */
  if (!(d >= (double)min && d <= (double)max) || (double)(int64_t)d != d) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "The value of \"%s\" is out of range. It must be an integer >= %lld and <= %lld. "
             "Received %g", arg, (long long)min, (long long)max, d);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool arg_int32(napi_env env, napi_value v, const char *arg, int32_t min, int32_t max,
                      int32_t *out)
{
  int64_t x;
  if (!arg_int64(env, v, arg, min, max, &x)) return false;
  *out = (int32_t)x;
  return true;
}

static bool arg_uint32(napi_env env, napi_value v, const char *arg, uint32_t *out)
{
  int64_t x;
  if (!arg_int64(env, v, arg, 0, UINT32_MAX, &x)) return false;
  *out = (uint32_t)x;
  return true;
}

static bool arg_fd(napi_env env, napi_value v, int *out)
{
  return arg_int32(env, v, "fd", 0, INT32_MAX, out);
}

static bool arg_bool(napi_env env, napi_value v, const char *arg, bool *out)
{
  if (!expect_type(env, v, napi_boolean, arg)) return false;
  return !napi_failed(env, napi_get_value_bool(env, v, out));
}

/* A Buffer argument's bytes (borrowed from the Buffer; valid during this call). */
static bool arg_buffer(napi_env env, napi_value v, const char *arg, void **data, size_t *len)
{
  bool is_buffer = false;
  if (napi_failed(env, napi_is_buffer(env, v, &is_buffer))) return false;
  if (!is_buffer) {
    napi_valuetype t;
    if (napi_failed(env, napi_typeof(env, v, &t))) return false;
    char msg[160];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a Buffer. Received type %s", arg,
             type_name(t));
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return !napi_failed(env, napi_get_buffer_info(env, v, data, len));
}

/* ---------------------------------------------------------------------------------------
 * Extended attributes. The l* and f* variants share code through `struct target`.
 * ------------------------------------------------------------------------------------- */

struct target {
  const char *path; /* NULL: use fd */
  int fd;
};

typedef ssize_t (*sized_reader)(const struct target *t, const char *name, char *buf, size_t size);

static ssize_t read_value(const struct target *t, const char *name, char *buf, size_t size)
{
  return t->path ? lgetxattr(t->path, name, buf, size) : fgetxattr(t->fd, name, buf, size);
}

static ssize_t read_list(const struct target *t, const char *name, char *buf, size_t size)
{
  (void)name;
  return t->path ? llistxattr(t->path, buf, size) : flistxattr(t->fd, buf, size);
}

/*
 * Reads a value or name list of any size into a malloc'd buffer (*out, caller frees).
 * Tries a small buffer first (one syscall for the usual small value); on ERANGE asks for
 * the size and retries, in case the attribute grows in between. Returns 0 or an errno value.
 */
static int read_sized(sized_reader read, const struct target *t, const char *name, char **out,
                      size_t *out_len)
{
  size_t cap = 1024;
  for (int attempt = 0; attempt < 16; attempt++) {
    char *buf = malloc(cap);
    if (!buf) return ENOMEM;
    ssize_t n = read(t, name, buf, cap);
    if (n >= 0) {
      *out = buf;
      *out_len = (size_t)n;
      return 0;
    }
    int err = errno;
    free(buf);
    if (err != ERANGE) return err;
    n = read(t, name, NULL, 0);
    if (n < 0) return errno;
    cap = (size_t)n > cap ? (size_t)n : cap * 2;
  }
  return ERANGE;
}

static napi_value getxattr_common(napi_env env, const struct target *t, const char *name,
                                  const char *syscall)
{
  napi_value result = NULL;
  char *buf = NULL;
  size_t len = 0;
  int err = read_sized(read_value, t, name, &buf, &len);
  if (err == ENODATA) {
    CHECK(napi_get_null(env, &result));
  } else if (err == ENOMEM) {
    throw_enomem(env);
  } else if (err) {
    throw_errno(env, err, syscall, t->path, NULL);
  } else {
    CHECK(napi_create_buffer_copy(env, len, buf, NULL, &result));
  }
out:
  free(buf);
  return result;
}

static napi_value listxattr_common(napi_env env, const struct target *t, const char *syscall)
{
  napi_value result = NULL, array, name_v;
  char *buf = NULL;
  size_t len = 0;
  uint32_t index = 0;
  int err = read_sized(read_list, t, NULL, &buf, &len);
  if (err == ENOMEM) {
    throw_enomem(env);
    goto out;
  }
  if (err) {
    throw_errno(env, err, syscall, t->path, NULL);
    goto out;
  }
  /* The list is NUL-terminated names back to back: "user.a\0user.b\0". */
  CHECK(napi_create_array(env, &array));
  for (size_t pos = 0; pos < len;) {
    const char *name = buf + pos;
    const char *end = memchr(name, '\0', len - pos);
    size_t name_len = end ? (size_t)(end - name) : len - pos;
    if (name_len > 0) {
      CHECK(napi_create_string_utf8(env, name, name_len, &name_v));
      CHECK(napi_set_element(env, array, index++, name_v));
    }
    pos += name_len + 1;
  }
  result = array;
out:
  free(buf);
  return result;
}

/* lgetxattr(path, name): Buffer | null */
static napi_value js_lgetxattr(napi_env env, napi_callback_info info)
{
  napi_value argv[2], result = NULL;
  char *path = NULL, *name = NULL;
  struct target t = { NULL, -1 };
  if (!get_args(env, info, 2, argv)) goto out;
  if (!(path = arg_string(env, argv[0], "path"))) goto out;
  if (!(name = arg_string(env, argv[1], "name"))) goto out;
  t.path = path;
  result = getxattr_common(env, &t, name, "lgetxattr");
out:
  free(path);
  free(name);
  return result;
}

/* fgetxattr(fd, name): Buffer | null */
static napi_value js_fgetxattr(napi_env env, napi_callback_info info)
{
  napi_value argv[2], result = NULL;
  char *name = NULL;
  struct target t = { NULL, -1 };
  if (!get_args(env, info, 2, argv)) goto out;
  if (!arg_fd(env, argv[0], &t.fd)) goto out;
  if (!(name = arg_string(env, argv[1], "name"))) goto out;
  result = getxattr_common(env, &t, name, "fgetxattr");
out:
  free(name);
  return result;
}

/* lsetxattr(path, name, value, flags): void */
static napi_value js_lsetxattr(napi_env env, napi_callback_info info)
{
  napi_value argv[4];
  char *path = NULL, *name = NULL;
  void *data;
  size_t len;
  int32_t flags;
  if (!get_args(env, info, 4, argv)) goto out;
  if (!(path = arg_string(env, argv[0], "path"))) goto out;
  if (!(name = arg_string(env, argv[1], "name"))) goto out;
  if (!arg_buffer(env, argv[2], "value", &data, &len)) goto out;
  if (!arg_int32(env, argv[3], "flags", INT32_MIN, INT32_MAX, &flags)) goto out;
  if (lsetxattr(path, name, data, len, flags) < 0) throw_errno(env, errno, "lsetxattr", path, NULL);
out:
  free(path);
  free(name);
  return NULL;
}

/* fsetxattr(fd, name, value, flags): void */
static napi_value js_fsetxattr(napi_env env, napi_callback_info info)
{
  napi_value argv[4];
  char *name = NULL;
  void *data;
  size_t len;
  int32_t flags;
  int fd;
  if (!get_args(env, info, 4, argv)) goto out;
  if (!arg_fd(env, argv[0], &fd)) goto out;
  if (!(name = arg_string(env, argv[1], "name"))) goto out;
  if (!arg_buffer(env, argv[2], "value", &data, &len)) goto out;
  if (!arg_int32(env, argv[3], "flags", INT32_MIN, INT32_MAX, &flags)) goto out;
  if (fsetxattr(fd, name, data, len, flags) < 0) throw_errno(env, errno, "fsetxattr", NULL, NULL);
out:
  free(name);
  return NULL;
}

/* llistxattr(path): string[] */
static napi_value js_llistxattr(napi_env env, napi_callback_info info)
{
  napi_value argv[1], result = NULL;
  char *path = NULL;
  struct target t = { NULL, -1 };
  if (!get_args(env, info, 1, argv)) goto out;
  if (!(path = arg_string(env, argv[0], "path"))) goto out;
  t.path = path;
  result = listxattr_common(env, &t, "llistxattr");
out:
  free(path);
  return result;
}

/* flistxattr(fd): string[] */
static napi_value js_flistxattr(napi_env env, napi_callback_info info)
{
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_fd(env, argv[0], &fd)) return NULL;
  struct target t = { NULL, fd };
  return listxattr_common(env, &t, "flistxattr");
}

/* lremovexattr(path, name): void */
static napi_value js_lremovexattr(napi_env env, napi_callback_info info)
{
  napi_value argv[2];
  char *path = NULL, *name = NULL;
  if (!get_args(env, info, 2, argv)) goto out;
  if (!(path = arg_string(env, argv[0], "path"))) goto out;
  if (!(name = arg_string(env, argv[1], "name"))) goto out;
  if (lremovexattr(path, name) < 0) throw_errno(env, errno, "lremovexattr", path, NULL);
out:
  free(path);
  free(name);
  return NULL;
}

/* fremovexattr(fd, name): void */
static napi_value js_fremovexattr(napi_env env, napi_callback_info info)
{
  napi_value argv[2];
  char *name = NULL;
  int fd;
  if (!get_args(env, info, 2, argv)) goto out;
  if (!arg_fd(env, argv[0], &fd)) goto out;
  if (!(name = arg_string(env, argv[1], "name"))) goto out;
  if (fremovexattr(fd, name) < 0) throw_errno(env, errno, "fremovexattr", NULL, NULL);
out:
  free(name);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Device nodes
 * ------------------------------------------------------------------------------------- */

/* mknod(path, mode, dev): void. `mode` includes the file type bits. */
static napi_value js_mknod(napi_env env, napi_callback_info info)
{
  napi_value argv[3];
  char *path = NULL;
  uint32_t mode;
  int64_t dev;
  if (!get_args(env, info, 3, argv)) goto out;
  if (!(path = arg_string(env, argv[0], "path"))) goto out;
  if (!arg_uint32(env, argv[1], "mode", &mode)) goto out;
  if (!arg_int64(env, argv[2], "dev", 0, MAX_SAFE, &dev)) goto out;
  if (mknod(path, (mode_t)mode, (dev_t)dev) < 0) throw_errno(env, errno, "mknod", path, NULL);
out:
  free(path);
  return NULL;
}

/* makedev(major, minor): number, in glibc's (the kernel's userspace) encoding. */
static napi_value js_makedev(napi_env env, napi_callback_info info)
{
  napi_value argv[2], result;
  uint32_t major, minor;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_uint32(env, argv[0], "major", &major)) return NULL;
  if (!arg_uint32(env, argv[1], "minor", &minor)) return NULL;
  dev_t dev = makedev(major, minor);
  if ((uint64_t)dev > (uint64_t)MAX_SAFE) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "makedev: the device number does not fit a JS number exactly");
    return NULL;
  }
  if (napi_failed(env, napi_create_int64(env, (int64_t)dev, &result))) return NULL;
  return result;
}

/* ---------------------------------------------------------------------------------------
 * Timestamps
 * ------------------------------------------------------------------------------------- */

/* Reads (atimeSec, atimeNsec, mtimeSec, mtimeNsec) from argv[0..4). */
static bool arg_times(napi_env env, napi_value *argv, struct timespec ts[2])
{
  int64_t v[4];
  static const char *names[4] = { "atimeSec", "atimeNsec", "mtimeSec", "mtimeNsec" };
  for (int i = 0; i < 4; i++) {
    if (!arg_int64(env, argv[i], names[i], -MAX_SAFE, MAX_SAFE, &v[i])) return false;
  }
  /* Out-of-range nanoseconds (other than UTIME_NOW/UTIME_OMIT) are left to the kernel: EINVAL. */
  ts[0].tv_sec = (time_t)v[0];
  ts[0].tv_nsec = (long)v[1];
  ts[1].tv_sec = (time_t)v[2];
  ts[1].tv_nsec = (long)v[3];
  return true;
}

/* utimensat(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec, nofollow): void */
static napi_value js_utimensat(napi_env env, napi_callback_info info)
{
  napi_value argv[6];
  char *path = NULL;
  struct timespec ts[2];
  bool nofollow;
  if (!get_args(env, info, 6, argv)) goto out;
  if (!(path = arg_string(env, argv[0], "path"))) goto out;
  if (!arg_times(env, argv + 1, ts)) goto out;
  if (!arg_bool(env, argv[5], "nofollow", &nofollow)) goto out;
  if (utimensat(AT_FDCWD, path, ts, nofollow ? AT_SYMLINK_NOFOLLOW : 0) < 0) {
    throw_errno(env, errno, "utimensat", path, NULL);
  }
out:
  free(path);
  return NULL;
}

/* futimens(fd, atimeSec, atimeNsec, mtimeSec, mtimeNsec): void */
static napi_value js_futimens(napi_env env, napi_callback_info info)
{
  napi_value argv[5];
  struct timespec ts[2];
  int fd;
  if (!get_args(env, info, 5, argv)) return NULL;
  if (!arg_fd(env, argv[0], &fd)) return NULL;
  if (!arg_times(env, argv + 1, ts)) return NULL;
  if (futimens(fd, ts) < 0) throw_errno(env, errno, "futimens", NULL, NULL);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Renames
 * ------------------------------------------------------------------------------------- */

static int do_renameat2(const char *old_path, const char *new_path, unsigned int flags)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 28))
  return renameat2(AT_FDCWD, old_path, AT_FDCWD, new_path, flags);
#else
  return (int)syscall(SYS_renameat2, AT_FDCWD, old_path, AT_FDCWD, new_path, flags);
#endif
}

/* renameat2(oldPath, newPath, flags): void */
static napi_value js_renameat2(napi_env env, napi_callback_info info)
{
  napi_value argv[3];
  char *old_path = NULL, *new_path = NULL;
  uint32_t flags;
  if (!get_args(env, info, 3, argv)) goto out;
  if (!(old_path = arg_string(env, argv[0], "oldPath"))) goto out;
  if (!(new_path = arg_string(env, argv[1], "newPath"))) goto out;
  if (!arg_uint32(env, argv[2], "flags", &flags)) goto out;
  if (do_renameat2(old_path, new_path, flags) < 0) {
    throw_errno(env, errno, "renameat2", old_path, new_path);
  }
out:
  free(old_path);
  free(new_path);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * File data
 * ------------------------------------------------------------------------------------- */

/* copyFileRange(fdIn, offIn, fdOut, offOut, len): number of bytes copied (0 at EOF). */
static napi_value js_copy_file_range(napi_env env, napi_callback_info info)
{
  napi_value argv[5], result;
  int fd_in, fd_out;
  int64_t off_in, off_out, len;
  if (!get_args(env, info, 5, argv)) return NULL;
  if (!arg_fd(env, argv[0], &fd_in)) return NULL;
  if (!arg_int64(env, argv[1], "offIn", 0, MAX_SAFE, &off_in)) return NULL;
  if (!arg_fd(env, argv[2], &fd_out)) return NULL;
  if (!arg_int64(env, argv[3], "offOut", 0, MAX_SAFE, &off_out)) return NULL;
  if (!arg_int64(env, argv[4], "len", 0, MAX_SAFE, &len)) return NULL;
  /* Explicit offsets: the kernel advances these copies, not the files' positions. */
  loff_t in = (loff_t)off_in, out = (loff_t)off_out;
  ssize_t n = copy_file_range(fd_in, &in, fd_out, &out, (size_t)len, 0);
  if (n < 0) {
    throw_errno(env, errno, "copy_file_range", NULL, NULL);
    return NULL;
  }
  if (napi_failed(env, napi_create_int64(env, (int64_t)n, &result))) return NULL;
  return result;
}

/* fallocate(fd, mode, offset, len): void */
static napi_value js_fallocate(napi_env env, napi_callback_info info)
{
  napi_value argv[4];
  int fd;
  int32_t mode;
  int64_t offset, len;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_fd(env, argv[0], &fd)) return NULL;
  if (!arg_int32(env, argv[1], "mode", INT32_MIN, INT32_MAX, &mode)) return NULL;
  if (!arg_int64(env, argv[2], "offset", -MAX_SAFE, MAX_SAFE, &offset)) return NULL;
  if (!arg_int64(env, argv[3], "len", -MAX_SAFE, MAX_SAFE, &len)) return NULL;
  if (fallocate(fd, mode, (off_t)offset, (off_t)len) < 0) {
    throw_errno(env, errno, "fallocate", NULL, NULL);
  }
  return NULL;
}

/* lseek(fd, offset, whence): new offset, or -1 on ENXIO (no data/hole past `offset`). */
static napi_value js_lseek(napi_env env, napi_callback_info info)
{
  napi_value argv[3], result;
  int fd;
  int32_t whence;
  int64_t offset;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!arg_fd(env, argv[0], &fd)) return NULL;
  if (!arg_int64(env, argv[1], "offset", -MAX_SAFE, MAX_SAFE, &offset)) return NULL;
  if (!arg_int32(env, argv[2], "whence", INT32_MIN, INT32_MAX, &whence)) return NULL;
  off_t pos = lseek(fd, (off_t)offset, whence);
  if (pos < 0 && errno != ENXIO) {
    throw_errno(env, errno, "lseek", NULL, NULL);
    return NULL;
  }
  if (napi_failed(env, napi_create_int64(env, pos < 0 ? -1 : (int64_t)pos, &result))) return NULL;
  return result;
}

/* syncfs(fd): void */
static napi_value js_syncfs(napi_env env, napi_callback_info info)
{
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_fd(env, argv[0], &fd)) return NULL;
  if (syncfs(fd) < 0) throw_errno(env, errno, "syncfs", NULL, NULL);
  return NULL;
}

/* dup2(oldfd, newfd): void -- makes newfd refer to oldfd's file (the daemon moves a direct
 * read handle, whose descriptor number the kernel holds as its file handle, onto a sibling). */
static napi_value js_dup2(napi_env env, napi_callback_info info)
{
  napi_value argv[2];
  int oldfd, newfd;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_fd(env, argv[0], &oldfd)) return NULL;
  if (!arg_fd(env, argv[1], &newfd)) return NULL;
  if (dup2(oldfd, newfd) < 0) throw_errno(env, errno, "dup2", NULL, NULL);
  return NULL;
}

/* readdirTyped(path): [names: string[], inos: number[], types: Uint8Array] -- the entries of
 * a directory with their inode numbers and d_type, without '.' and '..', in one pass. Lets
 * the daemon list a host directory without an lstat per entry (Node's Dirent has no ino). */
static napi_value js_readdir_typed(napi_env env, napi_callback_info info)
{
  napi_value argv[1], result = NULL, names, inos, types_ab, types, v;
  char *path = NULL;
  DIR *d = NULL;
  uint8_t *tbuf = NULL;
  size_t cap = 256, n = 0;
  if (!get_args(env, info, 1, argv)) goto out;
  if (!(path = arg_string(env, argv[0], "path"))) goto out;
  d = opendir(path);
  if (!d) { throw_errno(env, errno, "opendir", path, NULL); goto out; }
  tbuf = malloc(cap);
  if (!tbuf) { throw_errno(env, ENOMEM, "readdir", path, NULL); goto out; }
  CHECK(napi_create_array(env, &names));
  CHECK(napi_create_array(env, &inos));
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e) {
      if (errno != 0) { throw_errno(env, errno, "readdir", path, NULL); goto out; }
      break;
    }
    if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
    if (n == cap) {
      uint8_t *grown = realloc(tbuf, cap * 2);
      if (!grown) { throw_errno(env, ENOMEM, "readdir", path, NULL); goto out; }
      tbuf = grown;
      cap *= 2;
    }
    tbuf[n] = e->d_type;
    CHECK(napi_create_string_utf8(env, e->d_name, NAPI_AUTO_LENGTH, &v));
    CHECK(napi_set_element(env, names, (uint32_t)n, v));
    CHECK(napi_create_double(env, (double)e->d_ino, &v));
    CHECK(napi_set_element(env, inos, (uint32_t)n, v));
    n++;
  }
  void *data = NULL;
  CHECK(napi_create_arraybuffer(env, n > 0 ? n : 1, &data, &types_ab));
  if (n > 0) memcpy(data, tbuf, n);
  CHECK(napi_create_typedarray(env, napi_uint8_array, n, types_ab, 0, &types));
  CHECK(napi_create_array_with_length(env, 3, &result));
  CHECK(napi_set_element(env, result, 0, names));
  CHECK(napi_set_element(env, result, 1, inos));
  CHECK(napi_set_element(env, result, 2, types));
out:
  if (d) closedir(d);
  free(tbuf);
  free(path);
  return result;
}

/* ---------------------------------------------------------------------------------------
 * Module
 * ------------------------------------------------------------------------------------- */

/* The platform's values of the constants that src/sys/native.ts hard-codes, to check them. */
static napi_value make_constants(napi_env env)
{
  static const struct {
    const char *name;
    int64_t value;
  } table[] = {
    { "XATTR_CREATE", XATTR_CREATE },
    { "XATTR_REPLACE", XATTR_REPLACE },
    { "RENAME_NOREPLACE", RENAME_NOREPLACE },
    { "RENAME_EXCHANGE", RENAME_EXCHANGE },
    { "RENAME_WHITEOUT", RENAME_WHITEOUT },
    { "FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE },
    { "FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE },
    { "SEEK_DATA", SEEK_DATA },
    { "SEEK_HOLE", SEEK_HOLE },
    { "UTIME_NOW", UTIME_NOW },
    { "UTIME_OMIT", UTIME_OMIT },
  };
  napi_value result = NULL, obj, v;
  CHECK(napi_create_object(env, &obj));
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    CHECK(napi_create_int64(env, table[i].value, &v));
    CHECK(napi_set_named_property(env, obj, table[i].name, v));
  }
  result = obj;
out:
  return result;
}

NAPI_MODULE_INIT()
{
#define FN(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL }
  napi_property_descriptor props[] = {
    FN("lgetxattr", js_lgetxattr),
    FN("fgetxattr", js_fgetxattr),
    FN("lsetxattr", js_lsetxattr),
    FN("fsetxattr", js_fsetxattr),
    FN("llistxattr", js_llistxattr),
    FN("flistxattr", js_flistxattr),
    FN("lremovexattr", js_lremovexattr),
    FN("fremovexattr", js_fremovexattr),
    FN("mknod", js_mknod),
    FN("makedev", js_makedev),
    FN("utimensat", js_utimensat),
    FN("futimens", js_futimens),
    FN("renameat2", js_renameat2),
    FN("copyFileRange", js_copy_file_range),
    FN("fallocate", js_fallocate),
    FN("lseek", js_lseek),
    FN("syncfs", js_syncfs),
    FN("readdirTyped", js_readdir_typed),
    FN("dup2", js_dup2),
  };
#undef FN
  napi_value constants = make_constants(env);
  if (!constants) return NULL;
  if (napi_failed(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props))) {
    return NULL;
  }
  if (napi_failed(env, napi_set_named_property(env, exports, "constants", constants))) return NULL;
  return exports;
}
