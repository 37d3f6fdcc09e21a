// Splits a byte stream into lines, each at most `max` bytes (a longer line
// is dropped whole, with a note on stderr).
"use strict";

function eachLine(stream, max, onLine) {
  let pending = [];
  let size = 0;
  let dropping = false;
  stream.on("data", (chunk) => {
    for (let start = 0; start < chunk.length; ) {
      const nl = chunk.indexOf(10, start);
      const piece = chunk.subarray(start, nl < 0 ? chunk.length : nl);
      start = nl < 0 ? chunk.length : nl + 1;
      if (!dropping) {
        size += piece.length;
        if (size > max) {
          dropping = true;
          pending = [];
          process.stderr.write(`a worker output line longer than ${max} bytes was dropped\n`);
        } else {
          pending.push(piece);
        }
      }
      if (nl >= 0) {
        if (!dropping) onLine(Buffer.concat(pending).toString("utf8"));
        pending = [];
        size = 0;
        dropping = false;
      }
    }
  });
}

module.exports = { eachLine };
