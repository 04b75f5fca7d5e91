// MD5 for the ketama ring (CacheProxy/Ring), from OpenSSL's libcrypto.
//
// Why this shim exists: the ring hashes every key on the proxy's hot path and
// must not allocate there. EVP_Digest() creates and frees an EVP_MD_CTX on
// each call (and, in OpenSSL 3, fetches the algorithm); the low-level
// MD5_Init/Update/Final run on a context on the stack. OpenSSL 3 marks them
// deprecated but ships them in every 3.x release, so the warning is silenced
// here, once. When they go, keep one EVP_MD_CTX per thread instead and call
// EVP_DigestInit_ex2/Update/Final_ex on it.
#ifndef MEMCLUSTER_COPENSSLCRYPTO_SHIM_H
#define MEMCLUSTER_COPENSSLCRYPTO_SHIM_H

#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/md5.h>
#include <stddef.h>

/// Writes the 16-byte MD5 digest of `length` bytes at `data` into `digest`.
static inline void memcluster_md5(const void *data, size_t length, unsigned char *digest) {
    MD5_CTX context;
    MD5_Init(&context);
    MD5_Update(&context, data, length);
    MD5_Final(digest, &context);
}

#endif
