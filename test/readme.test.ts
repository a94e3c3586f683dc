/** The README's configuration reference stays in step with the option table behind --help. */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { OPTIONS } from '../lib/config';

const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');

describe('README', () => {
  it.each(OPTIONS.map((o) => [o.flag, o.env, o.def]))('documents %s, %s and its default', (flag, env, def) => {
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${flag}\` |`));
    expect(row).toBeDefined();
    expect(row).toContain(`\`${env}\``);
    if (def !== undefined && def !== 'false') expect(row).toContain(def === '0' ? '`0`' : `\`${def}\``);
  });

  it('gives the two quick-start commands', () => {
    expect(readme).toMatch(/^ {4}npm run demo\b/m);
    expect(readme).toMatch(/^ {4}npm test\b/m);
  });
});
