// Thrift wire constants (Apache Thrift: lib/*/protocol/TBinaryProtocol, TCompactProtocol,
// TApplicationException, doc/specs/HeaderFormat.md).

/** Message types (the low bits of a strict binary version word, the top 3 bits of compact byte 1). */
export const CALL = 1;
export const REPLY = 2;
export const EXCEPTION = 3;
export const ONEWAY = 4;

export type MessageTypeName = 'call' | 'reply' | 'exception' | 'oneway';
export const MESSAGE_TYPE_NAMES: readonly (MessageTypeName | undefined)[] = [
  undefined,
  'call',
  'reply',
  'exception',
  'oneway',
];

/** Field/element types as the binary protocol writes them (TType). */
export const T_STOP = 0;
export const T_BOOL = 2;
export const T_BYTE = 3;
export const T_DOUBLE = 4;
export const T_I16 = 6;
export const T_I32 = 8;
export const T_I64 = 10;
export const T_STRING = 11;
export const T_STRUCT = 12;
export const T_MAP = 13;
export const T_SET = 14;
export const T_LIST = 15;
export const T_UUID = 16;

/** Strict binary: the version word's high half. */
export const BINARY_VERSION_1 = 0x8001;
/** Compact: first byte, then version 1 in the low 5 bits of the second. */
export const COMPACT_PROTOCOL_ID = 0x82;
export const COMPACT_VERSION = 1;

/** Compact field/element type nibbles. */
export const C_BOOL_TRUE = 1;
export const C_BOOL_FALSE = 2;
export const C_BYTE = 3;
export const C_I16 = 4;
export const C_I32 = 5;
export const C_I64 = 6;
export const C_DOUBLE = 7;
export const C_BINARY = 8;
export const C_LIST = 9;
export const C_SET = 10;
export const C_MAP = 11;
export const C_STRUCT = 12;
export const C_UUID = 13;

/** Compact type nibble → TType (-1: invalid). Booleans map to T_BOOL. */
export const COMPACT_TO_TTYPE: readonly number[] = [
  T_STOP,
  T_BOOL,
  T_BOOL,
  T_BYTE,
  T_I16,
  T_I32,
  T_I64,
  T_DOUBLE,
  T_STRING,
  T_LIST,
  T_SET,
  T_MAP,
  T_STRUCT,
  T_UUID,
  -1,
  -1,
];

/** TType → compact type nibble (-1: invalid). Booleans in containers are written as 1. */
export const TTYPE_TO_COMPACT: readonly number[] = (() => {
  const t = new Array<number>(17).fill(-1);
  t[T_STOP] = 0;
  t[T_BOOL] = C_BOOL_TRUE;
  t[T_BYTE] = C_BYTE;
  t[T_I16] = C_I16;
  t[T_I32] = C_I32;
  t[T_I64] = C_I64;
  t[T_DOUBLE] = C_DOUBLE;
  t[T_STRING] = C_BINARY;
  t[T_LIST] = C_LIST;
  t[T_SET] = C_SET;
  t[T_MAP] = C_MAP;
  t[T_STRUCT] = C_STRUCT;
  t[T_UUID] = C_UUID;
  return t;
})();

/** True for a TType a value can have (not STOP, not the unused VOID/I8-alias slots). */
export function isValueType(t: number): boolean {
  return (
    t === T_BOOL ||
    t === T_BYTE ||
    t === T_DOUBLE ||
    t === T_I16 ||
    t === T_I32 ||
    t === T_I64 ||
    t === T_STRING ||
    t === T_STRUCT ||
    t === T_MAP ||
    t === T_SET ||
    t === T_LIST ||
    t === T_UUID
  );
}

/** TApplicationException types (the `type` field, id 2). */
export const TAppErr = {
  UNKNOWN: 0,
  UNKNOWN_METHOD: 1,
  INVALID_MESSAGE_TYPE: 2,
  WRONG_METHOD_NAME: 3,
  BAD_SEQUENCE_ID: 4,
  MISSING_RESULT: 5,
  INTERNAL_ERROR: 6,
  PROTOCOL_ERROR: 7,
  INVALID_TRANSFORM: 8,
  INVALID_PROTOCOL: 9,
  UNSUPPORTED_CLIENT_TYPE: 10,
} as const;

/** THeader: the 16-bit magic after the frame length (HeaderFormat.md). */
export const THEADER_MAGIC = 0x0fff;
/** THeader protocol ids. */
export const THEADER_PROTO_BINARY = 0;
export const THEADER_PROTO_COMPACT = 2;
/** Nesting the scanner and transcoder accept (Apache's default recursion limit). */
export const DEFAULT_MAX_DEPTH = 64;

export type ThriftProtocol = 'binary' | 'compact';
export type ThriftTransport = 'framed' | 'unframed' | 'header';
