"""Import cycles between the library's files (tests/structure.rs runs this on src/).

File-level import graph of the library in src/ (the binary's main.rs, cli.rs and
stderr_progress.rs left out): an edge A -> B when A names module file B in a path
(`use` lines and inline paths: super::, self::, crate::). `mod x;` declarations are not edges;
`pub use` re-exports are. Test modules (after #[cfg(test)]) are skipped. Prints edges' cycles."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
base = root
files = {}
for d, _, fs in os.walk(base):
    for f in fs:
        if f.endswith('.rs') and not (d == base and f in ('main.rs', 'cli.rs', 'stderr_progress.rs')):
            files[os.path.join(d, f)] = None

def mod_dir(path):
    # the directory whose children are this file's submodules
    if os.path.basename(path) in ('mod.rs', 'lib.rs'):
        return os.path.dirname(path)
    return path[:-3]

def module_file(dirpath):
    for c in (dirpath + '.rs', os.path.join(dirpath, 'mod.rs')):
        if c in files:
            return c
    return None

def parent_file(path):
    d = os.path.dirname(path) if os.path.basename(path) != 'mod.rs' else os.path.dirname(os.path.dirname(path))
    return module_file(d) if module_file(d) else None

def resolve(path, segs):
    # start module file
    if segs[0] == 'crate':
        cur = os.path.join(base, 'lib.rs'); segs = segs[1:]
    elif segs[0] == 'super':
        cur = path
        while segs and segs[0] == 'super':
            cur = parent_file(cur); segs = segs[1:]
            if cur is None: return None
    elif segs[0] == 'self':
        cur = path; segs = segs[1:]
    elif module_file(os.path.join(mod_dir(path), segs[0])):
        cur = path
    else:
        return None
    for s in segs:
        nxt = module_file(os.path.join(mod_dir(cur), s))
        if nxt is None:
            break
        cur = nxt
    return cur

edges = set()
pat = re.compile(r'(?<![A-Za-z0-9_:])((?:crate|super|self|[a-z_][a-z0-9_]*)(?:::[A-Za-z_][A-Za-z0-9_]*)*)(?:(::\{([^}]*)\})|(?<=[A-Za-z0-9_]))')
for path in files:
    text = open(path).read()
    text = text.split('#[cfg(test)]')[0]
    text = re.sub(r'//[^\n]*', '', text)
    # inside an inline `mod x { ... }`, `super::` names the file itself
    for im in re.finditer(r'\bmod\s+\w+\s*\{', text):
        depth, j = 0, im.end() - 1
        while j < len(text):
            depth += {'{': 1, '}': -1}.get(text[j], 0)
            if depth == 0: break
            j += 1
        body = text[im.end():j].replace('super::', 'self::')
        text = text[:im.end()] + body + text[j:]
    for m in pat.finditer(text):
        segs = m.group(1).split('::')
        if not m.group(3) and len(segs) < 2:
            continue
        targets = []
        if m.group(3):
            for item in m.group(3).split(','):
                item = item.strip().split(' as ')[0]
                if not item: continue
                targets.append(segs + item.split('::'))
        else:
            targets.append(segs)
        for t in targets:
            if t[-1] == 'self': t = t[:-1]
            r = resolve(path, t)
            if r and r != path:
                edges.add((path, r))
graph = {}
for a, b in edges:
    graph.setdefault(a, set()).add(b)
# strongly connected components (Tarjan)
index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in graph.get(v, ()):
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
sys.setrecursionlimit(10000)
for v in list(files):
    if v not in index: strong(v)
print(f"{len(files)} files, {len(edges)} edges, {len(sccs)} cycles (strongly connected groups)")
for c in sccs:
    rel = sorted(os.path.relpath(x, root) for x in c)
    print("  cycle:", ", ".join(rel))
    for a in c:
        for b in sorted(graph.get(a, ())):
            if b in c: print("     ", os.path.relpath(a, root), "->", os.path.relpath(b, root))
if '-v' in sys.argv:
    for a, b in sorted(edges): print(os.path.relpath(a, root), '->', os.path.relpath(b, root))
