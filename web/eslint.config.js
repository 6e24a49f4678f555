// ESLint (flat config) for the pages' scripts: `npm run lint` here, or `make lint-js`.
import js from "@eslint/js";
import globals from "globals";

/** Properties and calls that parse a string as HTML or code: the pages build the DOM from
 * nodes and put text in with textContent (see docs/reliability.md, Markup). */
const HTML_SINKS = ["innerHTML", "outerHTML"].map((property) => ({
  selector: `AssignmentExpression > MemberExpression.left[property.name='${property}']`,
  message: `Assigning ${property} parses a string as HTML: build nodes with h() instead.`,
}));

export default [
  js.configs.recommended,
  {
    files: ["static/*.js"],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: "module",
      globals: { ...globals.browser, io: "readonly" },
    },
    rules: {
      // Bugs that recommended lets through.
      eqeqeq: ["error", "always", { null: "ignore" }],
      "array-callback-return": "error",
      "no-promise-executor-return": "error",
      "no-self-compare": "error",
      "no-template-curly-in-string": "error",
      "no-unmodified-loop-condition": "error",
      "no-unreachable-loop": "error",
      "no-use-before-define": ["error", { functions: false, classes: true, variables: true }],
      "no-shadow": ["error", { builtinGlobals: false }],
      "no-constructor-return": "error",
      "default-case-last": "error",
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { args: "after-used", caughtErrors: "none" }],
      // Strings run as code or parsed as HTML.
      "no-eval": "error",
      "no-implied-eval": "error",
      "no-new-func": "error",
      "no-restricted-syntax": ["error", ...HTML_SINKS],
      "no-restricted-properties": ["error",
        { property: "insertAdjacentHTML", message: "Parses a string as HTML: build nodes with h()." },
        { object: "document", property: "write", message: "Parses a string as HTML." },
        { object: "document", property: "writeln", message: "Parses a string as HTML." }],
    },
  },
  {
    files: ["eslint.config.js"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
];
