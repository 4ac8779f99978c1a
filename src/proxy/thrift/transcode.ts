import type { ThriftProtocol } from '../../codec/thrift/constants.js';
import type { Payload } from '../../codec/thrift/frame.js';
import type { ThriftMessage } from '../../codec/thrift/reader.js';

/** Placeholder until the transcoder lands: refuses. */
export function transcode(
  _msg: ThriftMessage,
  _to: ThriftProtocol,
  _name: string,
  _seqid: number,
): Payload | string {
  return 'binary <-> compact conversion is not supported';
}
