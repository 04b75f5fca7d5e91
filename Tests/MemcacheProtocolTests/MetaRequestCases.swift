@testable import MemcacheProtocol

// Meta commands. Error expectations are memcached 1.6.18's answers to the same
// bytes (checked on the binary; OracleTests replays them).

let o31 = "O" + rep("a", 31)   // 32-byte opaque token: accepted
let o32 = "O" + rep("a", 32)   // 33 bytes: opaque token too long
let flags17 = "s t c f h l u v k q O1 P L I C1 F1 D1"
let flags18 = flags17 + " J1"

let metaGetCases: [RequestCase] = [
    RequestCase("mn\r\n", req(.metaNoop)),
    RequestCase("mn foo bar\r\n", req(.metaNoop)),
    RequestCase("mg k\r\n", meta(.metaGet, key: "k")),
    RequestCase("mg k v\r\n", meta(.metaGet, key: "k", letters: "v", tokens: "v")),
    RequestCase("mg k  v  \r\n", meta(.metaGet, key: "k", letters: "v", tokens: "v")),
    RequestCase("mg k\\x00 v\r\n", meta(.metaGet, key: "k")),                            // NUL ends the line
    RequestCase("mg k s v f t T30 Oabc q k\r\n",
                meta(.metaGet, key: "k", letters: "OTfkqstv", tokens: "s v f t T30 Oabc q k", opaque: "abc", ttl: 30)),
    RequestCase("mg k N30 R10 T-1 c h l u\r\n",
                meta(.metaGet, key: "k", letters: "NRTchlu", tokens: "N30 R10 T-1 c h l u", ttl: -1, vivify: 30, recache: 10)),
    RequestCase("mg k T2147483648\r\n", meta(.metaGet, key: "k", letters: "T", tokens: "T2147483648", ttl: -2147483648)),
    // Every command accepts every preparse flag (mg ignores F C M J D I P L).
    RequestCase("mg k F5 C5 M1 J5 D5 I P L\r\n",
                meta(.metaGet, key: "k", letters: "CDFIJLMP", tokens: "F5 C5 M1 J5 D5 I P L", compareCas: 5,
                     clientFlags: 5, mode: "1", delta: 5, initial: 5)),
    RequestCase("mg k \(o31) k\r\n", meta(.metaGet, key: "k", letters: "Ok", tokens: "\(o31) k", opaque: rep("a", 31))),
    RequestCase("mg k O\r\n", meta(.metaGet, key: "k", letters: "O", tokens: "O")),
    RequestCase("mg k \(flags17)\r\n",
                meta(.metaGet, key: "k", letters: "CDFILOPcfhklqstuv", tokens: flags17, opaque: "1", compareCas: 1,
                     clientFlags: 1, delta: 1)),
    RequestCase("mg a2V5 b k v\r\n", meta(.metaGet, key: "a2V5", letters: "bkv", tokens: "b k v", decodedKeyLength: 3)),
    RequestCase("mg a2U= b\r\n", meta(.metaGet, key: "a2U=", letters: "b", tokens: "b", decodedKeyLength: 2)),
    RequestCase("mg a!2V5 b\r\n", meta(.metaGet, key: "a!2V5", letters: "b", tokens: "b", decodedKeyLength: 3)),
    RequestCase("mg \(k250) v\r\n", meta(.metaGet, key: k250, letters: "v", tokens: "v")),
    RequestCase("mg\r\n", ERROR),
    RequestCase("mg \(k251)\r\n", err(.badCommandLineFormat)),
    RequestCase("mg \(k251) \(flags18)\r\n", err(.badCommandLineFormat)),            // key checked first
    RequestCase("mg k \(flags18)\r\n", err(.metaGetFlagsTooLong)),
    RequestCase("mg k \(flags18) zz a b c\r\n", err(.metaGetFlagsTooLong)),
    RequestCase("mg k x\r\n", err(.metaInvalidFlag)),
    RequestCase("mg k 1\r\n", err(.metaInvalidFlag)),
    RequestCase("mg k E5\r\n", err(.metaInvalidFlag)),
    RequestCase("mg k v v\r\n", err(.metaDuplicateFlag)),
    RequestCase("mg k \\x80\r\n", err(.metaDuplicateFlag)),                            // bytes >= 127
    RequestCase("mg k Tabc\r\n", err(.metaBadToken)),
    RequestCase("mg k T\r\n", err(.metaBadToken)),
    RequestCase("mg k N\r\n", err(.metaBadToken)),
    RequestCase("mg k Cabc\r\n", err(.metaBadToken)),
    RequestCase("mg k C18446744073709551616\r\n", err(.metaBadToken)),
    RequestCase("mg k Jabc\r\n", err(.metaInvalidInitial)),
    RequestCase("mg k Dabc\r\n", err(.metaInvalidDelta)),
    RequestCase("mg k Fabc\r\n", err(.badCommandLineFormat)),                          // F sets no message
    RequestCase("mg k Fabc Tabc\r\n", err(.metaBadToken)),
    RequestCase("mg k Tabc Fabc\r\n", err(.metaBadToken)),
    RequestCase("mg k Tabc Nxyz\r\n", err(.metaBadToken)),
    RequestCase("mg k Tabc Mxx\r\n", err(.metaIncorrectModeLength)),                  // last bad token wins
    RequestCase("mg k Mxx Tabc\r\n", err(.metaBadToken)),
    RequestCase("mg k Tabc zz\r\n", err(.metaInvalidFlag)),                           // invalid flag: at once
    RequestCase("mg k Tabc T5\r\n", err(.metaDuplicateFlag)),
    RequestCase("mg k x q\r\n", err(.metaInvalidFlag)),                               // never quiet
    RequestCase("mg k \(o32) k\r\n", err(.metaOpaqueTooLong)),
    RequestCase("mg k \(o32) Tabc\r\n", err(.metaBadToken)),                          // preparse first
    RequestCase("mg k b\r\n", err(.metaKeyDecoding)),
    RequestCase("mg a2V b k\r\n", err(.metaKeyDecoding)),
    RequestCase("mg a2V5= b\r\n", err(.metaKeyDecoding)),
    RequestCase("mg a=== b\r\n", err(.metaKeyDecoding)),
    RequestCase("mg a2V5 b v Tabc\r\n", err(.metaBadToken)),
]

let metaSetCases: [RequestCase] = [
    RequestCase("ms k 2\r\nxx\r\n", meta(.metaSet, key: "k", data: "xx")),
    RequestCase("ms k 2 T30 F5 c k Oop q I\r\nxx\r\n",
                meta(.metaSet, key: "k", letters: "FIOTckq", tokens: "T30 F5 c k Oop q I", opaque: "op", ttl: 30,
                     clientFlags: 5, data: "xx")),
    RequestCase("ms k 2 C99 MA\r\nxx\r\n",
                meta(.metaSet, key: "k", letters: "CM", tokens: "C99 MA", compareCas: 99, mode: "A", data: "xx")),
    RequestCase("ms k 2 ME\r\nxx\r\n", meta(.metaSet, key: "k", letters: "M", tokens: "ME", mode: "E", data: "xx")),
    RequestCase("ms k 2 MP\r\nxx\r\n", meta(.metaSet, key: "k", letters: "M", tokens: "MP", mode: "P", data: "xx")),
    RequestCase("ms k 2 MR\r\nxx\r\n", meta(.metaSet, key: "k", letters: "M", tokens: "MR", mode: "R", data: "xx")),
    RequestCase("ms k 2 MS\r\nxx\r\n", meta(.metaSet, key: "k", letters: "M", tokens: "MS", mode: "S", data: "xx")),
    RequestCase("ms k 2 N5 s v h l t u f\r\nxx\r\n",
                meta(.metaSet, key: "k", letters: "Nfhlstuv", tokens: "N5 s v h l t u f", vivify: 5, data: "xx")),
    RequestCase("ms k +2\r\nxx\r\n", meta(.metaSet, key: "k", data: "xx")),
    RequestCase("ms k 4294967298\r\nxx\r\n", meta(.metaSet, key: "k", data: "xx")),      // int32 truncation
    RequestCase("ms k 0\r\n\r\n", meta(.metaSet, key: "k", data: "")),
    RequestCase("ms k 1 s t c f h l u v k q O1 P L I C1 F1\r\nx\r\n",
                meta(.metaSet, key: "k", letters: "CFILOPcfhklqstuv", tokens: "s t c f h l u v k q O1 P L I C1 F1",
                     opaque: "1", compareCas: 1, clientFlags: 1, data: "x")),
    RequestCase("ms YWJj 1 b\r\nx\r\n", meta(.metaSet, key: "YWJj", letters: "b", tokens: "b", decodedKeyLength: 3, data: "x")),
    RequestCase("ms\r\n", ERROR),
    RequestCase("ms k\r\n", err(.badCommandLineFormat)),
    // Errors before the datalen is known swallow nothing.
    RequestCase("ms k abc\r\nxx\r\n", err(.badCommandLineFormat)),
    RequestCase("ms k -1\r\nxx\r\n", err(.badCommandLineFormat)),
    RequestCase("ms k 2147483646\r\nxx\r\n", err(.badCommandLineFormat)),
    RequestCase("ms a2V5 b 1\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("ms \(k251) 2\r\nab\r\n", err(.badCommandLineFormat)),
    RequestCase("ms k 1 \(flags17)\r\nx\r\n", err(.metaFlagsTooLong)),
    RequestCase("ms k abc \(flags18)\r\nx\r\n", err(.metaFlagsTooLong)),
    // Errors after it swallow <datalen>+2.
    RequestCase("ms k 2 x\r\nxx\r\n", err(.metaInvalidFlag, swallow: 4)),
    RequestCase("ms k 2 v v\r\nxx\r\n", err(.metaDuplicateFlag, swallow: 4)),
    RequestCase("ms k 1 I q I\r\nx\r\n", err(.metaDuplicateFlag, swallow: 3)),
    RequestCase("ms k 2 Tabc\r\nxx\r\n", err(.metaBadToken, swallow: 4)),
    RequestCase("ms k 1 C-1\r\nx\r\n", err(.metaBadToken, swallow: 3)),
    RequestCase("ms k 2 Fabc\r\nxx\r\n", err(.badCommandLineFormat, swallow: 4)),
    RequestCase("ms k 2 F-1\r\nxx\r\n", err(.badCommandLineFormat, swallow: 4)),
    RequestCase("ms k 2 Mxx\r\nxx\r\n", err(.metaIncorrectModeLength, swallow: 4)),
    RequestCase("ms k 2 M\r\nxx\r\n", err(.metaIncorrectModeLength, swallow: 4)),
    RequestCase("ms k 2 MX\r\nxx\r\n", err(.metaSetInvalidMode, swallow: 4)),
    RequestCase("ms k 2 Ms\r\nxx\r\n", err(.metaSetInvalidMode, swallow: 4)),         // lower case refused
    RequestCase("ms k 2 Mr q\r\nxx\r\n", err(.metaSetInvalidMode, swallow: 4)),
    RequestCase("ms k 2 \(o32)\r\nxx\r\n", err(.metaOpaqueTooLong, swallow: 4)),
    RequestCase("ms k 2 \(o32) MX\r\nxx\r\n", err(.metaSetInvalidMode, swallow: 4)),   // mode before opaque
    RequestCase("ms k 2 MX \(o32)\r\nxx\r\n", err(.metaSetInvalidMode, swallow: 4)),
    RequestCase("ms k 2 b\r\nxx\r\n", err(.metaKeyDecoding, swallow: 4)),
    // Bad data chunk: never quiet for ms.
    RequestCase("ms k 2\r\nxxx\r\n", err(.badDataChunk, consume: 12)),
    RequestCase("ms k 2 q\r\nxxx\r\n", err(.badDataChunk, consume: 14)),
]

let metaOtherCases: [RequestCase] = [
    RequestCase("md k\r\n", meta(.metaDelete, key: "k")),
    RequestCase("md k q C5 I T30 k Oxy\r\n",
                meta(.metaDelete, key: "k", letters: "CIOTkq", tokens: "q C5 I T30 k Oxy", opaque: "xy", ttl: 30, compareCas: 5)),
    RequestCase("md k v s t N5 J1 D1 MX\r\n",
                meta(.metaDelete, key: "k", letters: "DJMNstv", tokens: "v s t N5 J1 D1 MX", vivify: 5, mode: "X", delta: 1, initial: 1)),
    RequestCase("md\r\n", ERROR),
    RequestCase("md \(k251)\r\n", err(.badCommandLineFormat)),
    RequestCase("md k \(flags18)\r\n", err(.metaFlagsTooLong)),
    RequestCase("md k x\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("md k q q\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("md k Tabc\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("md k Cabc\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("md k Mxx\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("md k b\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("md k Fabc\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("md k \\x80\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("md k \(o32)\r\n", err(.metaOpaqueTooLong)),
    RequestCase("md k \(o32) q\r\n", err(.metaOpaqueTooLong)),

    RequestCase("ma k\r\n", meta(.metaArithmetic, key: "k")),
    RequestCase("ma k N0 J5 D18446744073709551615 v\r\n",
                meta(.metaArithmetic, key: "k", letters: "DJNv", tokens: "N0 J5 D18446744073709551615 v",
                     delta: 18446744073709551615, initial: 5)),
    RequestCase("ma k M+ q t c k Oz T9 C3\r\n",
                meta(.metaArithmetic, key: "k", letters: "CMOTckqt", tokens: "M+ q t c k Oz T9 C3", opaque: "z", ttl: 9,
                     compareCas: 3, mode: "+")),
    RequestCase("ma k M-\r\n", meta(.metaArithmetic, key: "k", letters: "M", tokens: "M-", mode: "-")),
    RequestCase("ma k MI\r\n", meta(.metaArithmetic, key: "k", letters: "M", tokens: "MI", mode: "I")),
    RequestCase("ma k MD\r\n", meta(.metaArithmetic, key: "k", letters: "M", tokens: "MD", mode: "D")),
    RequestCase("ma k F5 s f h l u I P L\r\n",
                meta(.metaArithmetic, key: "k", letters: "FILPfhlsu", tokens: "F5 s f h l u I P L", clientFlags: 5)),
    RequestCase("ma\r\n", ERROR),
    RequestCase("ma \(k251)\r\n", err(.badCommandLineFormat)),
    RequestCase("ma k \(flags18)\r\n", err(.metaFlagsTooLong)),
    RequestCase("ma k x\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("ma k Dabc\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("ma k Jabc\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("ma k D-1\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("ma k Mxx\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("ma k b\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("ma k MX Dabc\r\n", err(.metaInvalidOrDuplicateFlag)),
    RequestCase("ma k MX\r\n", err(.metaArithmeticInvalidMode)),
    RequestCase("ma k Mi\r\n", err(.metaArithmeticInvalidMode)),
    RequestCase("ma k Md\r\n", err(.metaArithmeticInvalidMode)),
    RequestCase("ma k \(o32)\r\n", err(.metaOpaqueTooLong)),
    RequestCase("ma k \(o32) MX\r\n", err(.metaArithmeticInvalidMode)),
    RequestCase("ma k MX \(o32)\r\n", err(.metaArithmeticInvalidMode)),

    RequestCase("me k\r\n", meta(.metaDebug, key: "k")),
    RequestCase("me a2V5 b\r\n", meta(.metaDebug, key: "a2V5", letters: "b", tokens: "b", decodedKeyLength: 3)),
    RequestCase("me k bx\r\n", meta(.metaDebug, key: "k", tokens: "bx")),
    RequestCase("me k x b\r\n", meta(.metaDebug, key: "k", tokens: "x b")),
    RequestCase("me\r\n", err(.badCommandLineFormat)),
    RequestCase("me \(k251)\r\n", err(.badCommandLineFormat)),
    RequestCase("me k b\r\n", err(.badCommandLineFormat)),                            // not "error decoding key"
    RequestCase("me a2V b\r\n", err(.badCommandLineFormat)),
]
