// SPDX-License-Identifier: MIT
//
// The DVK native addon: thin typed wrappers over what Node cannot do itself, the credentials
// of a Unix-socket peer and the ioctls of /dev/dvk (their ABI comes from the module's uAPI
// header, kmod/include/uapi/linux/dvk.h, included here and never copied). Policy stays in
// TypeScript; functions here return raw facts or throw errors carrying `code`.

#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <linux/dvk.h>

namespace {

// The errno's symbolic name ("ENOTTY"), which is what DvkError.code carries.
const char *ErrnoName(int err) {
  const char *name = strerrorname_np(err);
  return name ? name : "EIO";
}

Napi::Value ThrowErrno(Napi::Env env, int err, const char *what) {
  Napi::Error error = Napi::Error::New(env, std::string(what) + ": " + std::strerror(err));
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

// peerCredentials(fd) -> { pid, uid, gid } of the process at the other end of a Unix socket,
// as the kernel recorded it at connect() time (SO_PEERCRED), so a client cannot lie about it.
Napi::Value PeerCredentials(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "peerCredentials(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ThrowErrno(env, errno, "getsockopt(SO_PEERCRED)");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

// dvkVersion(fd) -> what DVK_IOC_VERSION reports for an open /dev/dvk.
Napi::Value DvkVersion(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "dvkVersion(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct dvk_version v = {};
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), DVK_IOC_VERSION, &v) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_VERSION)");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("abi", Napi::Number::New(env, v.abi));
  out.Set("maxPayload", Napi::Number::New(env, v.max_payload));
  out.Set("features", Napi::BigInt::New(env, static_cast<uint64_t>(v.features)));
  out.Set("queueLength", Napi::Number::New(env, v.queue_length));
  out.Set("queueBytes", Napi::Number::New(env, v.queue_bytes));
  return out;
}

// The ABI this build was compiled against, for the kernel backend to compare with the module.
Napi::Object Abi(Napi::Env env) {
  Napi::Object abi = Napi::Object::New(env);
  abi.Set("version", Napi::Number::New(env, DVK_ABI_VERSION));
  abi.Set("nameMax", Napi::Number::New(env, DVK_NAME_MAX));
  abi.Set("slotsMax", Napi::Number::New(env, DVK_SLOTS_MAX));
  abi.Set("any", Napi::Number::New(env, DVK_ANY));
  abi.Set("parkedMax", Napi::Number::New(env, DVK_PARKED_MAX));
  return abi;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("dvkVersion", Napi::Function::New(env, DvkVersion, "dvkVersion"));
  exports.Set("abi", Abi(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(dvk, Init)
