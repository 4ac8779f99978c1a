// HTTP/2 frame codec and HPACK, without I/O (used by src/proxy/h2frame and the upstream
// connections in src/upstream/h2frame-*.ts).
export * from './constants.js';
export * from './frame.js';
export * from './hpack.js';
export * from './huffman.js';
