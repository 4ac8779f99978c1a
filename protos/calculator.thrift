// Test and demo service for the Thrift proxy (docs/thrift.md).
// The Node code under test/fixtures/thrift/gen-nodejs is generated from this file:
//   thrift --gen js:node -out test/fixtures/thrift/gen-nodejs protos/calculator.thrift
// (Debian's thrift-compiler 0.17); it is committed so tests run on a machine without it.

namespace java switchyard.example
namespace py switchyard.example

enum Operation {
  ADD = 1,
  SUBTRACT = 2,
  MULTIPLY = 3,
  DIVIDE = 4,
}

struct Work {
  1: i32 num1 = 0,
  2: i32 num2,
  3: Operation op,
  4: optional string comment,
}

exception InvalidOperation {
  1: i32 whatOp,
  2: string why,
}

// Every Thrift type, nested, so the message scanner and transcoder see them all.
struct Everything {
  1: bool flag,
  2: i8 small,
  3: i16 short_num,
  4: i32 num,
  5: i64 big,
  6: double ratio,
  7: string text,
  8: binary blob,
  9: list<Work> works,
  10: set<string> tags,
  11: map<i32, list<bool>> flags_by_id,
  12: optional Everything inner,
  13: map<string, map<string, double>> nested_maps,
  14: list<list<i64>> matrix,
  200: bool late_flag,
}

service Calculator {
  void ping(),
  i32 add(1: i32 num1, 2: i32 num2),
  i32 calculate(1: i32 logid, 2: Work w) throws (1: InvalidOperation ouch),
  // The name of the server that answered, to see how calls are spread.
  string whoami(),
  string echo(1: string msg),
  Everything mirror(1: Everything e),
  // Waits ms milliseconds before answering (timeouts, replies out of order).
  string slow(1: i32 ms),
  oneway void zip(1: string note),
}

service Weather {
  string forecast(1: string city),
}
