// Skills (contract section 5): ~/.pizzapi/skills/<name>.md or
// <name>/SKILL.md; created and updated skills are written as <name>/SKILL.md.
"use strict";

const fs = require("fs");
const path = require("path");
const { Refusal, field, requestId } = require("./payload");
const { writeAtomically } = require("./state");

const NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const MAX_SKILL_BYTES = 1024 * 1024;
const MAX_SKILLS = 1000;

/** The trimmed, validated `name` of a payload. */
function skillName(p) {
  const name = (field(p, "name", "string") ?? "").trim();
  if (!name) throw new Refusal("Missing skill name");
  if (!NAME.test(name)) throw new Refusal("Invalid skill name: must be lowercase letters, numbers, and hyphens only");
  return name;
}

/** The `description:` line between the first two `---` lines, quotes stripped; "" when absent. */
function description(text) {
  const lines = text.split(/\r?\n/);
  const open = lines.findIndex((l) => l.trim() === "---");
  if (open < 0) return "";
  for (let i = open + 1; i < lines.length && lines[i].trim() !== "---"; i += 1) {
    const m = /^description:\s*(.*)$/.exec(lines[i]);
    if (m) {
      const value = m[1].trim();
      const quoted = value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0];
      return quoted ? value.slice(1, -1) : value;
    }
  }
  return "";
}

/** A regular file's text, at most MAX_SKILL_BYTES; null when it is not a regular file. */
function readSkillFile(file) {
  let fd;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    if (!fs.fstatSync(fd).isFile()) return null;
    const buf = Buffer.alloc(MAX_SKILL_BYTES);
    let n = 0;
    for (let r; n < buf.length && (r = fs.readSync(fd, buf, n, buf.length - n, n)) > 0; ) n += r;
    return buf.subarray(0, n).toString("utf8");
  } finally {
    fs.closeSync(fd);
  }
}

class Skills {
  constructor(dir) {
    this.dir = dir;
  }

  /** The file of skill `name`: <name>/SKILL.md first, then <name>.md. */
  find(name) {
    for (const file of [path.join(this.dir, name, "SKILL.md"), path.join(this.dir, `${name}.md`)]) {
      const content = readSkillFile(file);
      if (content !== null) return { file, content };
    }
    return null;
  }

  /** RunnerSkill[], sorted by name. */
  list() {
    let names;
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return [];
    }
    const found = new Set(names.map((n) => n.replace(/\.md$/, "")).filter((n) => NAME.test(n)));
    const skills = [];
    for (const name of [...found].sort().slice(0, MAX_SKILLS)) {
      const skill = this.find(name);
      if (skill) skills.push({ name, description: description(skill.content), filePath: skill.file });
    }
    return skills;
  }

  handlers() {
    const result = (p, fields) => ({ event: "skill_result", payload: { requestId: requestId(p), ...fields } });
    const write = (p) => {
      const name = skillName(p);
      const content = field(p, "content", "string");
      if (content === undefined) throw new Refusal("Missing field `content`");
      if (Buffer.byteLength(content) > MAX_SKILL_BYTES) throw new Refusal(`Skill content larger than ${MAX_SKILL_BYTES} bytes`);
      writeAtomically(path.join(this.dir, name, "SKILL.md"), content);
      fs.rmSync(path.join(this.dir, `${name}.md`), { force: true });
      return result(p, { ok: true, skills: this.list() });
    };
    return {
      list_skills: (p) => ({ event: "skills_list", payload: { requestId: requestId(p), skills: this.list() } }),
      create_skill: write,
      update_skill: write,
      delete_skill: (p) => {
        const name = skillName(p);
        const targets = [path.join(this.dir, name), path.join(this.dir, `${name}.md`)].filter((t) => {
          try {
            fs.lstatSync(t);
            return true;
          } catch {
            return false;
          }
        });
        for (const t of targets) fs.rmSync(t, { recursive: true, force: true });
        const skills = this.list();
        return result(p, targets.length ? { ok: true, skills } : { ok: false, message: "Skill not found", skills });
      },
      get_skill: (p) => {
        const name = skillName(p);
        const skill = this.find(name);
        return result(p, skill ? { ok: true, name, content: skill.content } : { ok: false, message: "Skill not found" });
      },
    };
  }
}

module.exports = { Skills, description, NAME };
