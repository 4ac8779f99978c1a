// Pure Thrift wire codec: no sockets, no config. See docs/thrift.md.
export * from './constants.js';
export * from './exception.js';
export * from './frame.js';
export * from './message.js';
export * from './reader.js';
export * from './scanner.js';
export * from './theader.js';
export * from './transcode.js';
export * from './varint.js';
