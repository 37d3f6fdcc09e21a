// A JSON Schema checker for the subset of draft 2020-12 that the protocol's
// schemas use (fixtures/schema/): type, properties, required,
// additionalProperties, items, $ref into $defs, anyOf, oneOf, const,
// minimum, maximum and the integer formats. Other keywords are ignored.

const INTEGER_RANGES = {
  uint16: [0, 65535],
  uint32: [0, 4294967295],
  uint64: [0, Number.MAX_SAFE_INTEGER],
  int32: [-2147483648, 2147483647],
};

function typeOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value; // string, boolean, object
}

function typeMatches(wanted, value) {
  const actual = typeOf(value);
  return wanted === actual || (wanted === "number" && actual === "integer");
}

function resolve(root, ref) {
  const prefix = "#/$defs/";
  if (!ref.startsWith(prefix)) return null;
  return (root.$defs || {})[ref.slice(prefix.length)] || null;
}

function check(root, schema, value, path, errors) {
  if (schema === true || schema === undefined) return;
  if (schema === false) {
    errors.push(`${path}: not allowed here`);
    return;
  }
  if (schema.$ref) {
    const target = resolve(root, schema.$ref);
    if (!target) errors.push(`${path}: unknown schema reference ${schema.$ref}`);
    else check(root, target, value, path, errors);
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeMatches(t, value))) {
      errors.push(`${path}: expected ${types.join(" or ")}, got ${typeOf(value)}`);
      return;
    }
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    errors.push(`${path}: must be ${JSON.stringify(schema.const)}`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) {
      errors.push(`${path}: must be at least ${schema.minimum}`);
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      errors.push(`${path}: must be at most ${schema.maximum}`);
    }
    const range = INTEGER_RANGES[schema.format];
    if (range && (!Number.isInteger(value) || value < range[0] || value > range[1])) {
      errors.push(`${path}: must be a ${schema.format} (${range[0]}..${range[1]})`);
    }
  }
  if (schema.anyOf) {
    if (!schema.anyOf.some((s) => validate(root, value, s).length === 0)) {
      errors.push(`${path}: matches none of the allowed shapes`);
    }
  }
  if (schema.oneOf) {
    const matching = schema.oneOf.filter((s) => validate(root, value, s).length === 0).length;
    if (matching !== 1) {
      const allowed = schema.oneOf.filter((s) => "const" in s).map((s) => JSON.stringify(s.const));
      errors.push(
        allowed.length === schema.oneOf.length
          ? `${path}: must be one of ${allowed.join(", ")}`
          : `${path}: must match exactly one of the allowed shapes (matches ${matching})`,
      );
    }
  }
  if (typeOf(value) === "object") {
    const props = schema.properties || {};
    for (const name of schema.required || []) {
      if (!(name in value)) errors.push(`${path}: missing required field "${name}"`);
    }
    for (const [name, v] of Object.entries(value)) {
      const sub = `${path}.${name}`;
      if (name in props) check(root, props[name], v, sub, errors);
      else if (schema.additionalProperties !== undefined) {
        check(root, schema.additionalProperties, v, sub, errors);
      }
    }
  }
  if (Array.isArray(value) && schema.items !== undefined) {
    value.forEach((item, i) => check(root, schema.items, item, `${path}[${i}]`, errors));
  }
}

/// The problems of `value` against `schema` ("$.path: what"); empty: valid.
/// `root` is the document whose $defs references point into.
export function validate(root, value, schema = root) {
  const errors = [];
  check(root, schema, value, "$", errors);
  return errors;
}
