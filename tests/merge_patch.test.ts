// applyMergePatch: the RFC 7386 appendix cases, immutability and "__proto__" safety.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { applyMergePatch } from "../src/merge_patch.ts";

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object") {
    for (const key of Object.keys(value)) {
      deepFreeze((value as Record<string, unknown>)[key]);
    }
    Object.freeze(value);
  }
  return value;
}

/** Compare as JSON text, so own "__proto__" keys compare like any other key. */
function assertJson(actual: unknown, expected: string): void {
  assert.equal(JSON.stringify(actual), JSON.stringify(JSON.parse(expected)));
}

// RFC 7386, Appendix A: [original, patch, result] as JSON text.
const RFC_CASES: Array<[string, string, string]> = [
  ['{"a":"b"}', '{"a":"c"}', '{"a":"c"}'],
  ['{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'],
  ['{"a":"b"}', '{"a":null}', "{}"],
  ['{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'],
  ['{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'],
  ['{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'],
  ['{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'],
  ['{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'],
  ['["a","b"]', '["c","d"]', '["c","d"]'],
  ['{"a":"b"}', '["c"]', '["c"]'],
  ['{"a":"foo"}', "null", "null"],
  ['{"a":"foo"}', '"bar"', '"bar"'],
  ['{"e":null}', '{"a":1}', '{"e":null,"a":1}'],
  ["[1,2]", '{"a":"b","c":null}', '{"a":"b"}'],
  ["{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'],
];

describe("applyMergePatch", () => {
  for (const [original, patch, result] of RFC_CASES) {
    it(`applyMergePatch() turns ${original} patched with ${patch} into ${result}`, () => {
      const target = deepFreeze(JSON.parse(original));
      const p = deepFreeze(JSON.parse(patch));
      assert.deepEqual(applyMergePatch(target, p), JSON.parse(result));
    });
  }

  it("applyMergePatch() matches the RFC 7386 section 3 example", () => {
    const target = deepFreeze({
      title: "Goodbye!",
      author: { givenName: "John", familyName: "Doe" },
      tags: ["example", "sample"],
      content: "This will be unchanged",
    });
    const patch = deepFreeze({
      title: "Hello!",
      phoneNumber: "+01-123-456-7890",
      author: { familyName: null },
      tags: ["example"],
    });
    assert.deepEqual(applyMergePatch(target, patch), {
      title: "Hello!",
      author: { givenName: "John" },
      tags: ["example"],
      content: "This will be unchanged",
      phoneNumber: "+01-123-456-7890",
    });
  });

  it("applyMergePatch() treats a missing target like an empty object", () => {
    assert.deepEqual(applyMergePatch(undefined, { a: 1, b: null }), { a: 1 });
    assert.deepEqual(applyMergePatch(null, { a: { b: null } }), { a: {} });
    assert.deepEqual(applyMergePatch("text", { a: 1 }), { a: 1 });
    assert.equal(applyMergePatch({ a: 1 }, 5), 5);
  });

  it("applyMergePatch() mutates neither argument and returns a new object", () => {
    const target = { a: { b: 1 }, keep: [1] };
    const patch = { a: { c: 2 }, keep: null };
    const before = JSON.stringify([target, patch]);
    const result = applyMergePatch(target, patch);
    assert.equal(JSON.stringify([target, patch]), before);
    assert.notEqual(result, target);
    assert.deepEqual(result, { a: { b: 1, c: 2 } });
  });

  it("applyMergePatch() keeps a __proto__ key as data without touching prototypes", () => {
    const target = JSON.parse('{"__proto__":{"polluted":1},"a":1}');
    const patch = JSON.parse(
      '{"__proto__":{"extra":2},"b":{"__proto__":{"deep":3}},"c":{"constructor":{"prototype":{"x":1}}}}',
    );
    const result = applyMergePatch(target, patch) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(result), Object.prototype);
    assert.ok(Object.hasOwn(result, "__proto__"));
    assertJson(
      result,
      '{"__proto__":{"polluted":1,"extra":2},"a":1,"b":{"__proto__":{"deep":3}},"c":{"constructor":{"prototype":{"x":1}}}}',
    );
    const inner = result.b as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(inner), Object.prototype);
    const probe = {} as Record<string, unknown>;
    for (const key of ["polluted", "extra", "deep", "x"]) {
      assert.equal(probe[key], undefined, `Object.prototype.${key} was set`);
    }
  });

  it("applyMergePatch() removes an own __proto__ key on a null patch value", () => {
    const target = JSON.parse('{"__proto__":{"p":1},"a":1}');
    const result = applyMergePatch(target, JSON.parse('{"__proto__":null}'));
    assertJson(result, '{"a":1}');
    assert.equal(Object.getPrototypeOf(result), Object.prototype);
    const plain = applyMergePatch({ a: 1 }, JSON.parse('{"__proto__":null}'));
    assert.deepEqual(plain, { a: 1 });
    assert.equal(Object.getPrototypeOf(plain), Object.prototype);
  });

  it("applyMergePatch() does not read inherited properties of the target", () => {
    // "toString" and "__proto__" exist on every object through its prototype;
    // a patch must not merge into them.
    const result = applyMergePatch({}, { toString: { a: 1 } });
    assertJson(result, '{"toString":{"a":1}}');
    const viaProto = applyMergePatch({}, JSON.parse('{"__proto__":{"a":1}}'));
    assertJson(viaProto, '{"__proto__":{"a":1}}');
    assert.ok(Object.hasOwn(viaProto as object, "__proto__"));
  });
});
