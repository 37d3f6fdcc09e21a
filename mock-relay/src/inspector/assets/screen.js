// A small terminal screen: enough VT100/xterm for a shell prompt, `ls`
// and `top` — printable text, carriage return and line feed, colours (16,
// 256 and true colour), cursor movement and positioning, erasing,
// inserting and deleting lines and characters, scroll regions, the
// alternate screen, and a bounded scrollback. Anything else is ignored.

const SCROLLBACK = 1_000;

const DEFAULT_STYLE = Object.freeze({ fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false });

/// The 16 basic colours are CSS classes (themeable); others are explicit.
function xterm256(n) {
  if (n < 16) return { cls: n };
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255];
    const i = n - 16;
    return { rgb: `rgb(${v[Math.floor(i / 36)]},${v[Math.floor(i / 6) % 6]},${v[i % 6]})` };
  }
  const g = 8 + (n - 232) * 10;
  return { rgb: `rgb(${g},${g},${g})` };
}

export class Screen {
  constructor(cols, rows) {
    this.cols = cols;
    this.rows = rows;
    this.style = { ...DEFAULT_STYLE };
    this.scrollback = [];
    this.main = null;
    this.reset();
  }

  reset() {
    this.lines = Array.from({ length: this.rows }, () => this.blankLine());
    this.x = 0;
    this.y = 0;
    this.top = 0;
    this.bottom = this.rows - 1;
    this.saved = { x: 0, y: 0 };
    this.cursorVisible = true;
    this.state = "text";
    this.params = "";
    this.alt = false;
  }

  blankLine() {
    return Array.from({ length: this.cols }, () => ({ ch: " ", style: DEFAULT_STYLE }));
  }

  /// Feeds decoded text.
  write(text) {
    for (const ch of text) this.feed(ch);
  }

  feed(ch) {
    const code = ch.codePointAt(0);
    switch (this.state) {
      case "esc":
        return this.escape(ch);
      case "csi":
        if (code >= 0x40 && code <= 0x7e) {
          this.state = "text";
          return this.csi(ch, this.params);
        }
        this.params += ch;
        if (this.params.length > 64) this.state = "text";
        return;
      case "osc":
        if (ch === "\x07") this.state = "text";
        else if (ch === "\x1b") this.state = "osc-esc";
        return;
      case "osc-esc":
        this.state = "text";
        return;
      case "charset":
        this.state = "text";
        return;
      default:
        break;
    }
    if (code < 0x20 || code === 0x7f) return this.control(ch);
    this.print(ch);
  }

  control(ch) {
    switch (ch) {
      case "\x1b":
        this.state = "esc";
        break;
      case "\r":
        this.x = 0;
        break;
      case "\n":
      case "\x0b":
      case "\x0c":
        this.lineFeed();
        break;
      case "\b":
        this.x = Math.max(0, Math.min(this.x, this.cols - 1) - 1);
        break;
      case "\t":
        this.x = Math.min(this.cols - 1, (Math.floor(this.x / 8) + 1) * 8);
        break;
      default:
        break;
    }
  }

  print(ch) {
    if (this.x >= this.cols) {
      this.x = 0;
      this.lineFeed();
    }
    this.lines[this.y][this.x] = { ch, style: this.style };
    this.x += 1;
  }

  lineFeed() {
    if (this.y === this.bottom) this.scrollUp(1);
    else if (this.y < this.rows - 1) this.y += 1;
  }

  scrollUp(n) {
    for (let i = 0; i < n; i++) {
      const [gone] = this.lines.splice(this.top, 1);
      if (this.top === 0 && !this.alt) {
        this.scrollback.push(gone);
        if (this.scrollback.length > SCROLLBACK) this.scrollback.shift();
      }
      this.lines.splice(this.bottom, 0, this.blankLine());
    }
  }

  scrollDown(n) {
    for (let i = 0; i < n; i++) {
      this.lines.splice(this.bottom, 1);
      this.lines.splice(this.top, 0, this.blankLine());
    }
  }

  escape(ch) {
    this.state = "text";
    switch (ch) {
      case "[":
        this.state = "csi";
        this.params = "";
        break;
      case "]":
        this.state = "osc";
        break;
      case "(":
      case ")":
        this.state = "charset";
        break;
      case "7":
        this.saved = { x: this.x, y: this.y };
        break;
      case "8":
        ({ x: this.x, y: this.y } = this.saved);
        break;
      case "M":
        if (this.y === this.top) this.scrollDown(1);
        else this.y = Math.max(0, this.y - 1);
        break;
      case "D":
        this.lineFeed();
        break;
      case "E":
        this.x = 0;
        this.lineFeed();
        break;
      case "c":
        this.style = { ...DEFAULT_STYLE };
        this.reset();
        break;
      default:
        break;
    }
  }

  clamp() {
    this.x = Math.max(0, Math.min(this.cols - 1, this.x));
    this.y = Math.max(0, Math.min(this.rows - 1, this.y));
  }

  eraseCells(line, from, to) {
    for (let i = Math.max(0, from); i < Math.min(this.cols, to); i++) {
      this.lines[line][i] = { ch: " ", style: DEFAULT_STYLE };
    }
  }

  csi(final, raw) {
    const priv = raw.startsWith("?");
    const list = (priv ? raw.slice(1) : raw).split(";").map((p) => (p === "" ? NaN : Number(p)));
    const n = (i, d = 1) => (Number.isFinite(list[i]) && list[i] > 0 ? list[i] : d);
    switch (final) {
      case "m":
        return this.sgr(raw === "" ? [0] : list.map((v) => (Number.isFinite(v) ? v : 0)));
      case "A":
        this.y = Math.max(this.y < this.top ? 0 : this.top, this.y - n(0));
        return this.clamp();
      case "B":
        this.y = Math.min(this.y > this.bottom ? this.rows - 1 : this.bottom, this.y + n(0));
        return this.clamp();
      case "C":
        this.x += n(0);
        return this.clamp();
      case "D":
        this.x = Math.min(this.x, this.cols - 1) - n(0);
        return this.clamp();
      case "E":
        this.x = 0;
        this.y += n(0);
        return this.clamp();
      case "F":
        this.x = 0;
        this.y -= n(0);
        return this.clamp();
      case "G":
      case "`":
        this.x = n(0) - 1;
        return this.clamp();
      case "d":
        this.y = n(0) - 1;
        return this.clamp();
      case "H":
      case "f":
        this.y = n(0) - 1;
        this.x = n(1) - 1;
        return this.clamp();
      case "J": {
        const mode = Number.isFinite(list[0]) ? list[0] : 0;
        if (mode === 0) {
          this.eraseCells(this.y, this.x, this.cols);
          for (let l = this.y + 1; l < this.rows; l++) this.lines[l] = this.blankLine();
        } else if (mode === 1) {
          for (let l = 0; l < this.y; l++) this.lines[l] = this.blankLine();
          this.eraseCells(this.y, 0, this.x + 1);
        } else {
          this.lines = this.lines.map(() => this.blankLine());
          if (mode === 3) this.scrollback = [];
        }
        return;
      }
      case "K": {
        const mode = Number.isFinite(list[0]) ? list[0] : 0;
        if (mode === 0) this.eraseCells(this.y, this.x, this.cols);
        else if (mode === 1) this.eraseCells(this.y, 0, this.x + 1);
        else this.eraseCells(this.y, 0, this.cols);
        return;
      }
      case "X":
        return this.eraseCells(this.y, this.x, this.x + n(0));
      case "P": {
        const line = this.lines[this.y];
        line.splice(this.x, Math.min(n(0), this.cols - this.x));
        while (line.length < this.cols) line.push({ ch: " ", style: DEFAULT_STYLE });
        return;
      }
      case "@": {
        const line = this.lines[this.y];
        const count = Math.min(n(0), this.cols - this.x);
        line.splice(this.x, 0, ...Array.from({ length: count }, () => ({ ch: " ", style: DEFAULT_STYLE })));
        line.length = this.cols;
        return;
      }
      case "L":
        if (this.y >= this.top && this.y <= this.bottom) {
          for (let i = 0; i < n(0); i++) {
            this.lines.splice(this.bottom, 1);
            this.lines.splice(this.y, 0, this.blankLine());
          }
        }
        return;
      case "M":
        if (this.y >= this.top && this.y <= this.bottom) {
          for (let i = 0; i < n(0); i++) {
            this.lines.splice(this.y, 1);
            this.lines.splice(this.bottom, 0, this.blankLine());
          }
        }
        return;
      case "S":
        return this.scrollUp(n(0));
      case "T":
        return this.scrollDown(n(0));
      case "r":
        this.top = n(0) - 1;
        this.bottom = Math.min(this.rows, n(1, this.rows)) - 1;
        if (this.top >= this.bottom) {
          this.top = 0;
          this.bottom = this.rows - 1;
        }
        this.x = 0;
        this.y = 0;
        return;
      case "s":
        this.saved = { x: this.x, y: this.y };
        return;
      case "u":
        ({ x: this.x, y: this.y } = this.saved);
        return;
      case "h":
      case "l":
        if (priv) this.mode(list, final === "h");
        return;
      default:
        return;
    }
  }

  mode(list, on) {
    for (const m of list) {
      if (m === 25) this.cursorVisible = on;
      if (m === 1049 || m === 1047 || m === 47) {
        if (on && !this.alt) {
          this.main = { lines: this.lines, x: this.x, y: this.y };
          this.lines = Array.from({ length: this.rows }, () => this.blankLine());
          this.alt = true;
        } else if (!on && this.alt) {
          this.lines = this.main.lines;
          this.x = this.main.x;
          this.y = this.main.y;
          this.alt = false;
        }
      }
    }
  }

  sgr(codes) {
    const s = { ...this.style };
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) Object.assign(s, DEFAULT_STYLE);
      else if (c === 1) s.bold = true;
      else if (c === 2) s.dim = true;
      else if (c === 3) s.italic = true;
      else if (c === 4) s.underline = true;
      else if (c === 7) s.inverse = true;
      else if (c === 22) s.bold = s.dim = false;
      else if (c === 23) s.italic = false;
      else if (c === 24) s.underline = false;
      else if (c === 27) s.inverse = false;
      else if (c >= 30 && c <= 37) s.fg = { cls: c - 30 };
      else if (c === 39) s.fg = null;
      else if (c >= 40 && c <= 47) s.bg = { cls: c - 40 };
      else if (c === 49) s.bg = null;
      else if (c >= 90 && c <= 97) s.fg = { cls: c - 90 + 8 };
      else if (c >= 100 && c <= 107) s.bg = { cls: c - 100 + 8 };
      else if (c === 38 || c === 48) {
        let color = null;
        if (codes[i + 1] === 5 && codes[i + 2] !== undefined) {
          color = xterm256(codes[i + 2] & 255);
          i += 2;
        } else if (codes[i + 1] === 2 && codes[i + 4] !== undefined) {
          color = { rgb: `rgb(${codes[i + 2] & 255},${codes[i + 3] & 255},${codes[i + 4] & 255})` };
          i += 4;
        }
        if (c === 38) s.fg = color;
        else s.bg = color;
      }
    }
    this.style = Object.freeze(s);
  }

  /// The whole text (scrollback and screen), one string per line, trailing
  /// blanks cut.
  text() {
    return [...this.scrollback, ...this.lines].map((l) => l.map((c) => c.ch).join("").trimEnd());
  }

  /// Renders into `pre`: the scrollback as plain text, the screen as spans
  /// of equal style (built with the DOM: the page's CSP forbids inline
  /// style attributes in markup).
  render(pre) {
    const frag = document.createDocumentFragment();
    if (this.scrollback.length) {
      frag.append(this.scrollback.map((l) => l.map((c) => c.ch).join("").trimEnd()).join("\n") + "\n");
    }
    this.lines.forEach((line, li) => {
      let run = "";
      let runStyle = null;
      let runCursor = false;
      const flush = () => {
        if (!run) return;
        frag.append(styled(run, runStyle, runCursor));
        run = "";
      };
      line.forEach((cell, ci) => {
        const cursor = this.cursorVisible && li === this.y && ci === Math.min(this.x, this.cols - 1);
        if (cell.style !== runStyle || cursor || runCursor) {
          flush();
          runStyle = cell.style;
          runCursor = cursor;
        }
        run += cell.ch;
      });
      flush();
      frag.append("\n");
    });
    pre.replaceChildren(frag);
  }
}

function styled(text, style, cursor) {
  if (style === DEFAULT_STYLE && !cursor) return document.createTextNode(text);
  const span = document.createElement("span");
  span.textContent = text;
  let { fg, bg } = style;
  if (style.inverse !== cursor) {
    [fg, bg] = [bg || { cls: "bg" }, fg || { cls: "fg" }];
  }
  const classes = [];
  if (fg && fg.cls !== undefined) classes.push(`fg-${fg.cls}`);
  else if (fg) span.style.color = fg.rgb;
  if (bg && bg.cls !== undefined) classes.push(`bg-${bg.cls}`);
  else if (bg) span.style.backgroundColor = bg.rgb;
  if (style.bold) classes.push("b");
  if (style.dim) classes.push("dim");
  if (style.italic) classes.push("i");
  if (style.underline) classes.push("u");
  if (cursor) classes.push("cursor");
  span.className = classes.join(" ");
  return span;
}
