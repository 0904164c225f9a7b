import { ArraySource, PagedSource, WindowedList } from '../windowedList';
import { flush } from './helpers';

function names(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `item-${i}`);
}

function makeList(height = 240) {
  const list = new WindowedList<string>({
    rowHeight: 24,
    overscan: 2,
    fallbackHeight: height,
    renderRow: (row, item) => (row.textContent = item ?? 'loading')
  });
  document.body.appendChild(list.node);
  return list;
}

describe('WindowedList', () => {
  it('keeps only the visible rows of 10,000 in the DOM', () => {
    const list = makeList();
    list.setSource(new ArraySource(names(10000)));
    const rows = list.node.querySelectorAll('.cs-WindowedList-row');
    // 240px / 24px = 10 rows, plus 2 overscan below (none above at the top).
    expect(rows.length).toBe(12);
    expect(rows[0].textContent).toBe('item-0');
    expect((list.node.firstChild as HTMLElement).style.height).toBe(`${10000 * 24}px`);
  });

  it('shows the rows at the scroll position, reusing row elements', () => {
    const list = makeList();
    list.setSource(new ArraySource(names(10000)));
    const before = new Set(list.node.querySelectorAll('.cs-WindowedList-row'));
    list.scrollToIndex(9990);
    expect(list.renderedIndices[0]).toBe(9988);
    expect(list.renderedIndices[list.renderedIndices.length - 1]).toBe(9999);
    const rows = [...list.node.querySelectorAll<HTMLElement>('.cs-WindowedList-row')];
    expect(rows.every(r => before.has(r))).toBe(true);
    const last = rows.find(r => r.dataset.index === '9999')!;
    expect(last.textContent).toBe('item-9999');
    expect(last.style.top).toBe(`${9999 * 24}px`);
  });

  it('renders an empty source as no rows', () => {
    const list = makeList();
    list.setSource(new ArraySource<string>([]));
    expect(list.node.querySelectorAll('.cs-WindowedList-row').length).toBe(0);
  });
});

describe('PagedSource', () => {
  it('fetches only the pages the window needs, once each', async () => {
    const all = names(10000);
    const fetched: number[] = [];
    const source = new PagedSource<string>(async (offset, limit) => {
      fetched.push(offset);
      return { items: all.slice(offset, offset + limit), total: all.length };
    }, 100);
    await source.start();
    expect(source.total).toBe(10000);
    const list = makeList();
    list.setSource(source);
    list.scrollToIndex(5000);
    // Row 5000 is not loaded yet: a placeholder, then the real item once its page arrives.
    const row = () => list.node.querySelector<HTMLElement>('[data-index="5000"]')!;
    expect(row().textContent).toBe('loading');
    await flush();
    await flush();
    expect(row().textContent).toBe('item-5000');
    list.scrollToIndex(5001);
    await flush();
    expect(fetched).toEqual([0, 4900, 5000]);
  });

  it('passes a failed page on and retries it later', async () => {
    let fail = true;
    const source = new PagedSource<string>(async (offset, limit) => {
      if (offset > 0 && fail) {
        throw new Error('boom');
      }
      return { items: names(300).slice(offset, offset + limit), total: 300 };
    }, 100);
    await source.start();
    await expect(source.ensure(150, 160)).rejects.toThrow('boom');
    fail = false;
    await source.ensure(150, 160);
    expect(source.item(150)).toBe('item-150');
  });
});
