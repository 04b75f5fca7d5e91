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
#include <stdint.h>

/// An MD5 digest read as four little-endian 32-bit words, the way ketama
/// (libmemcached, twemproxy) cuts it into ring points.
typedef struct {
    uint32_t word[4];
} memcluster_md5_words;

/// MD5 of `length` bytes at `data`, as four little-endian words. Returned by
/// value so the Swift caller needs no buffer and no closure.
static inline memcluster_md5_words memcluster_md5_le_words(const void *data, size_t length) {
    unsigned char digest[MD5_DIGEST_LENGTH];
    MD5_CTX context;
    MD5_Init(&context);
    MD5_Update(&context, data, length);
    MD5_Final(digest, &context);
    memcluster_md5_words words;
    for (int i = 0; i < 4; i++) {
        words.word[i] = (uint32_t)digest[4 * i] | (uint32_t)digest[4 * i + 1] << 8
                      | (uint32_t)digest[4 * i + 2] << 16 | (uint32_t)digest[4 * i + 3] << 24;
    }
    return words;
}

#endif
