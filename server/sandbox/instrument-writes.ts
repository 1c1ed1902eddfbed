/**
 * The write barrier, put into designer scripts at bundle time: every assignment to a property
 * is tested for a world object, which takes a call that the in-isolate runtime journals
 * (server/sandbox/runtime/writes.ts); any other object gets the assignment as written.
 *
 * Why: a tick is a transaction, so every write to the world must be undoable. Scripts used to
 * see the world through proxies that journaled writes; a proxy costs every read and write a trap
 * call (docs/performance.md). Now reads are plain property reads on the world's objects, and only
 * writes to the world pay for the journal.
 *
 *   o.k = v        ->  (__mp_w(o) ? __mp_set(o, "k", v) : o.k = v)
 *   o[k] = v       ->  (__mp_w(o) ? __mp_set(o, k, v) : o[k] = v)
 *   o.k += v       ->  (__mp_w(o) ? __mp_set(o, "k", o["k"] + v) : o.k += v)
 *   f().k += v     ->  (__mp_w(_a = f()) ? __mp_set(_a, "k", _a["k"] + v) : _a.k += v)
 *   o.k ||= v      ->  (__mp_w(o) ? (o["k"] || __mp_set(o, "k", v)) : o.k ||= v)   (&&=, ??= too)
 *   o.k++, --o.k   ->  (__mp_w(o) ? __mp_inc(o, "k", 1, true) : o.k++), and so on
 *   delete o.k     ->  (__mp_w(o) ? __mp_del(o, "k") : delete o.k)
 *
 * The object is evaluated once, into a temporary unless it is a name, `this` or a literal; only
 * one branch runs, and each evaluates the key and the value once, in JavaScript's order. The
 * plain branch keeps its own inline cache, so a script's writes to its own objects cost what
 * they cost in plain JavaScript (measured in an isolate, a million field writes in a loop: no
 * more than the loop alone, against ~9 ns a write when every write was a call; writes to the
 * world ~10 ns more each for the test).
 *
 * The rewrite runs after TypeScript's own transforms (a TS "after" transformer), so class fields,
 * which TypeScript lowers to `this.x = ...` in the constructor (useDefineForClassFields off), are
 * rewritten too: a derived class whose base constructor returns a world object would otherwise
 * define fields on it natively.
 *
 * Refused at bundle time, with the file and line: a property as a destructuring target
 * (`[o.a, o.b] = pair`) or as a for-in/of head (`for (o.k of list)`), which write without an
 * assignment expression the rewrite could turn into a call; writes through `super`, whose
 * receiver the call could not name; and every identifier starting `__mp_`, so no script can
 * shadow a helper.
 *
 * What the rewrite cannot see (built-ins that mutate their arguments, code from strings) is
 * guarded in the isolate (server/sandbox/runtime/guards.ts, installed by the lockdown).
 */
import ts from 'typescript';

/** The module the rewritten scripts import the helpers from (the bundler resolves it). */
export const WRITES_MODULE = 'moonpatch:writes';
const RESERVED_PREFIX = '__mp_';
const HELPERS = ['__mp_w', '__mp_set', '__mp_inc', '__mp_del'] as const;

/** The operator a compound assignment applies (`+=` applies `+`, `||=` applies `||`). */
const OPERATOR_OF: ReadonlyMap<ts.SyntaxKind, ts.BinaryOperator> = new Map<ts.SyntaxKind, ts.BinaryOperator>([
  [ts.SyntaxKind.PlusEqualsToken, ts.SyntaxKind.PlusToken],
  [ts.SyntaxKind.MinusEqualsToken, ts.SyntaxKind.MinusToken],
  [ts.SyntaxKind.AsteriskEqualsToken, ts.SyntaxKind.AsteriskToken],
  [ts.SyntaxKind.SlashEqualsToken, ts.SyntaxKind.SlashToken],
  [ts.SyntaxKind.PercentEqualsToken, ts.SyntaxKind.PercentToken],
  [ts.SyntaxKind.AsteriskAsteriskEqualsToken, ts.SyntaxKind.AsteriskAsteriskToken],
  [ts.SyntaxKind.LessThanLessThanEqualsToken, ts.SyntaxKind.LessThanLessThanToken],
  [ts.SyntaxKind.GreaterThanGreaterThanEqualsToken, ts.SyntaxKind.GreaterThanGreaterThanToken],
  [ts.SyntaxKind.GreaterThanGreaterThanGreaterThanEqualsToken, ts.SyntaxKind.GreaterThanGreaterThanGreaterThanToken],
  [ts.SyntaxKind.AmpersandEqualsToken, ts.SyntaxKind.AmpersandToken],
  [ts.SyntaxKind.BarEqualsToken, ts.SyntaxKind.BarToken],
  [ts.SyntaxKind.CaretEqualsToken, ts.SyntaxKind.CaretToken],
  [ts.SyntaxKind.BarBarEqualsToken, ts.SyntaxKind.BarBarToken],
  [ts.SyntaxKind.AmpersandAmpersandEqualsToken, ts.SyntaxKind.AmpersandAmpersandToken],
  [ts.SyntaxKind.QuestionQuestionEqualsToken, ts.SyntaxKind.QuestionQuestionToken],
]);

/** The operators of the logical assignments, which write only when the read does not decide. */
const LOGICAL = new Set<ts.SyntaxKind>([ts.SyntaxKind.BarBarToken, ts.SyntaxKind.AmpersandAmpersandToken, ts.SyntaxKind.QuestionQuestionToken]);

const isAssignment = (kind: ts.SyntaxKind): boolean => kind >= ts.SyntaxKind.FirstAssignment && kind <= ts.SyntaxKind.LastAssignment;

/** `((o.k))` is as much an assignment target as `o.k`. */
function skipParens(e: ts.Expression): ts.Expression {
  while (ts.isParenthesizedExpression(e)) e = e.expression;
  return e;
}

export interface InstrumentedModule {
  /** JavaScript (ES2022 modules) with the writes rewritten and an inline source map to `source`. */
  code: string;
}

/** A construct the rewrite refuses, where it is (line and column 1-based). */
export interface InstrumentProblem {
  file: string;
  line: number;
  column: number;
  /** The source line, for the build error's excerpt. */
  lineText: string;
  message: string;
}

/** Problems found in one file. */
export class InstrumentError extends Error {
  constructor(readonly problems: InstrumentProblem[]) {
    super(problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.message}`).join('\n'));
  }
}

/**
 * Rewrite one designer module. Returns null when the file does not parse: the caller hands
 * the original to esbuild, whose syntax errors designers already know. Throws InstrumentError
 * for the constructs refused above.
 */
export function instrumentWrites(fileName: string, source: string): InstrumentedModule | null {
  const problems: InstrumentProblem[] = [];
  const result = ts.transpileModule(source, {
    fileName,
    reportDiagnostics: true,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      allowJs: true,
      // Class fields become `this.x = v` in the constructor, which the rewrite then journals.
      useDefineForClassFields: false,
      sourceMap: true,
      inlineSources: true,
      // Keep imports whose bindings look unused after type erasure: esbuild decides.
      verbatimModuleSyntax: false,
    },
    transformers: { after: [(context) => (file) => rewrite(file, context, fileName, problems)] },
  });
  if ((result.diagnostics ?? []).some((d) => d.category === ts.DiagnosticCategory.Error)) return null;
  if (problems.length > 0) throw new InstrumentError(problems);
  const map = JSON.parse(result.sourceMapText!) as { sources: string[]; file?: string };
  map.sources = [fileName];
  delete map.file;
  const code = result.outputText.replace(/\/\/# sourceMappingURL=.*\s*$/, '') +
    '\n//# sourceMappingURL=data:application/json;base64,' + Buffer.from(JSON.stringify(map)).toString('base64') + '\n';
  return { code };
}

function rewrite(file: ts.SourceFile, context: ts.TransformationContext, fileName: string, problems: InstrumentProblem[]): ts.SourceFile {
  const f = context.factory;
  const original = ts.getOriginalNode(file) as ts.SourceFile;

  const refuse = (node: ts.Node, message: string): void => {
    const at = ts.getOriginalNode(node);
    const pos = at.pos >= 0 ? original.getLineAndCharacterOfPosition(at.getStart(original)) : { line: 0, character: 0 };
    const lineText = original.text.split('\n')[pos.line] ?? '';
    problems.push({ file: fileName, line: pos.line + 1, column: pos.character + 1, lineText, message });
  };

  const helper = (name: (typeof HELPERS)[number], args: ts.Expression[], like: ts.Node): ts.Expression =>
    ts.setOriginalNode(ts.setTextRange(f.createCallExpression(f.createIdentifier(name), undefined, args), like), like);

  interface Target {
    /** The object, visited. */
    object: ts.Expression;
    /** The key as an expression (a string literal for `o.name`), visited. */
    key: ts.Expression;
    /** The same target on another expression for the object, as written (`o.name` or `o[key]`). */
    member(object: ts.Expression): ts.Expression;
  }

  /**
   * The parts of a property target; null for targets left alone (private names) and for writes
   * through `super`, which are refused (`like` is the write, for the message).
   */
  const split = (target: ts.Expression, like: ts.Node): Target | null => {
    if ((ts.isPropertyAccessExpression(target) || ts.isElementAccessExpression(target)) && target.expression.kind === ts.SyntaxKind.SuperKeyword) {
      refuse(like, 'writing through `super` (`super.x = v`, `super.x++`, `delete super.x`) is not supported in moonpatch scripts (the write could not be journaled)');
      return null;
    }
    if (ts.isPropertyAccessExpression(target)) {
      if (ts.isPrivateIdentifier(target.name)) return null;
      const name = target.name.text;
      return { object: visitExpr(target.expression), key: f.createStringLiteral(name), member: (o) => f.createPropertyAccessExpression(o, name) };
    }
    if (ts.isElementAccessExpression(target)) {
      // The plain branch gets a visit of its own of the key (and of the value, below): only one
      // branch runs, and each needs its own nodes, temporaries included.
      return {
        object: visitExpr(target.expression),
        key: visitExpr(target.argumentExpression),
        member: (o) => f.createElementAccessExpression(o, visitExpr(target.argumentExpression)),
      };
    }
    return null;
  };

  /**
   * An expression to use more than once: its first use, and a maker of the later ones. A name,
   * `this` or a literal is repeated; anything else is assigned to a temporary at its first use
   * (hoisted to the function, as TypeScript does with its own temporaries).
   */
  const once = (e: ts.Expression): [ts.Expression, () => ts.Expression] => {
    if (ts.isIdentifier(e)) return [e, () => f.createIdentifier(e.text)];
    if (e.kind === ts.SyntaxKind.ThisKeyword) return [e, () => f.createThis()];
    if (ts.isStringLiteral(e)) return [e, () => f.createStringLiteral(e.text)];
    if (ts.isNumericLiteral(e)) return [e, () => f.createNumericLiteral(e.text)];
    const temp = f.createTempVariable(context.hoistVariableDeclaration);
    return [f.createAssignment(temp, e), () => temp];
  };

  /**
   * `(__mp_w(o) ? journaled : plain)`: the object is evaluated once, in the test. Writes to
   * the script's own objects (local arrays, scratch maps) then run as the plain operation they
   * were, with their own inline caches: as fast as in plain JavaScript. Only objects of the
   * world take the journaled call. Each branch evaluates the key and the value once, in the
   * order JavaScript does; only one branch runs.
   */
  const guarded = (like: ts.Node, t: Target, journaled: (object: () => ts.Expression) => ts.Expression, plain: (object: ts.Expression) => ts.Expression): ts.Expression => {
    const [first, again] = once(t.object);
    const test = f.createCallExpression(f.createIdentifier('__mp_w'), undefined, [first]);
    const choice = f.createConditionalExpression(test, undefined, journaled(again), undefined, plain(again()));
    return f.createParenthesizedExpression(ts.setOriginalNode(ts.setTextRange(choice, like), like));
  };

  /** A destructuring pattern (in an assignment) with a property somewhere among its targets. */
  const patternHasProperty = (e: ts.Expression): boolean => {
    const inner = skipParens(e);
    if (ts.isPropertyAccessExpression(inner) || ts.isElementAccessExpression(inner)) return true;
    if (ts.isArrayLiteralExpression(inner)) return inner.elements.some((el) => patternHasProperty(ts.isSpreadElement(el) ? el.expression : el));
    if (ts.isObjectLiteralExpression(inner)) {
      return inner.properties.some((p) =>
        ts.isPropertyAssignment(p) ? patternHasProperty(p.initializer) : ts.isSpreadAssignment(p) ? patternHasProperty(p.expression) : false,
      );
    }
    if (ts.isBinaryExpression(inner) && inner.operatorToken.kind === ts.SyntaxKind.EqualsToken) return patternHasProperty(inner.left);
    return false;
  };

  const visitExpr = (e: ts.Expression): ts.Expression => ts.visitNode(e, visit) as ts.Expression;

  function visitAssignment(node: ts.BinaryExpression): ts.Node {
    const op = node.operatorToken.kind;
    const target = skipParens(node.left);
    if (ts.isObjectLiteralExpression(target) || ts.isArrayLiteralExpression(target)) {
      if (patternHasProperty(target)) refuse(node, 'a property cannot be a destructuring target in moonpatch scripts (the write could not be journaled); destructure into local variables, then assign each property');
      return ts.visitEachChild(node, visit, context);
    }
    const t = split(target, node);
    if (t === null) return ts.visitEachChild(node, visit, context);
    const value = visitExpr(node.right);
    const opToken = op as ts.AssignmentOperator;
    const plain = (o: ts.Expression) => f.createBinaryExpression(t.member(o), opToken, visitExpr(node.right));
    if (op === ts.SyntaxKind.EqualsToken) return guarded(node, t, (o) => helper('__mp_set', [o(), t.key, value], node), plain);
    const binary = OPERATOR_OF.get(op);
    if (binary === undefined) return ts.visitEachChild(node, visit, context);
    // Journaled, the target is read and then written: the key is used twice, so it too is
    // evaluated once (into a temporary unless it is a name or a literal).
    return guarded(node, t, (o) => {
      const [key, keyAgain] = once(t.key);
      // The key's first use must be the first evaluated: the read for `||=` (it comes first),
      // the helper's key argument for `+=` (arguments run left to right, the read is the last).
      if (LOGICAL.has(binary)) {
        return f.createParenthesizedExpression(f.createBinaryExpression(f.createElementAccessExpression(o(), key), binary, helper('__mp_set', [o(), keyAgain(), value], node)));
      }
      return helper('__mp_set', [o(), key, f.createBinaryExpression(f.createElementAccessExpression(o(), keyAgain()), binary, value)], node);
    }, plain);
  }

  function visitUpdate(node: ts.PrefixUnaryExpression | ts.PostfixUnaryExpression): ts.Node {
    const t = split(skipParens(node.operand), node);
    if (t === null) return ts.visitEachChild(node, visit, context);
    const delta = node.operator === ts.SyntaxKind.PlusPlusToken ? f.createNumericLiteral(1) : f.createPrefixUnaryExpression(ts.SyntaxKind.MinusToken, f.createNumericLiteral(1));
    const postfix = ts.isPostfixUnaryExpression(node);
    return guarded(node, t, (o) => helper('__mp_inc', [o(), t.key, delta, postfix ? f.createTrue() : f.createFalse()], node), (o) =>
      postfix ? f.createPostfixUnaryExpression(t.member(o), node.operator) : f.createPrefixUnaryExpression(node.operator, t.member(o)),
    );
  }

  function visit(node: ts.Node): ts.Node {
    if (ts.isIdentifier(node) && node.text.startsWith(RESERVED_PREFIX)) {
      refuse(node, `identifiers starting with "${RESERVED_PREFIX}" are reserved for the engine`);
      return node;
    }
    if (ts.isBinaryExpression(node) && isAssignment(node.operatorToken.kind)) return visitAssignment(node);
    if ((ts.isPrefixUnaryExpression(node) || ts.isPostfixUnaryExpression(node)) &&
      (node.operator === ts.SyntaxKind.PlusPlusToken || node.operator === ts.SyntaxKind.MinusMinusToken)) {
      return visitUpdate(node);
    }
    if (ts.isDeleteExpression(node)) {
      const t = split(skipParens(node.expression), node);
      if (t !== null) return guarded(node, t, (o) => helper('__mp_del', [o(), t.key], node), (o) => f.createDeleteExpression(t.member(o)));
      return ts.visitEachChild(node, visit, context);
    }
    if ((ts.isForInStatement(node) || ts.isForOfStatement(node)) && !ts.isVariableDeclarationList(node.initializer) && patternHasProperty(node.initializer)) {
      refuse(node, 'a property cannot be the target of a for-in/for-of loop in moonpatch scripts (the write could not be journaled); use a local variable');
      return ts.visitEachChild(node, visit, context);
    }
    return ts.visitEachChild(node, visit, context);
  }

  // visitLexicalEnvironment (and visitEachChild, for every function) adds the `var` of the
  // temporaries that `once` hoisted.
  const body = ts.visitLexicalEnvironment(file.statements, visit, context);
  const imports = f.createImportDeclaration(
    undefined,
    f.createImportClause(false, undefined, f.createNamedImports(HELPERS.map((h) => f.createImportSpecifier(false, undefined, f.createIdentifier(h))))),
    f.createStringLiteral(WRITES_MODULE),
  );
  return f.updateSourceFile(file, [imports, ...body]);
}
