//! Test helpers shared by the parsers' tests: a fixed-seed random source for generated
//! inputs (a failure names its case, which replays), and the pieces a reader is fed in.

/// xorshift64*.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// 0 .. n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, from: &[&'a [u8]]) -> &'a [u8] {
        from[self.below(from.len())]
    }

    /// Edit `b` at random: up to two bytes changed, line ends added, bytes taken out, or the
    /// end cut.
    pub fn edit(&mut self, b: &mut Vec<u8>) {
        for _ in 0..self.below(3) {
            if b.is_empty() {
                break;
            }
            let at = self.below(b.len());
            match self.below(4) {
                0 => b[at] = self.next_u64() as u8,
                1 => b.insert(at, b'\n'),
                2 => {
                    b.remove(at);
                }
                _ => b.truncate(at),
            }
        }
    }

    /// Two ways to cut `len` bytes into pieces: one byte at a time, and at up to three
    /// random places (sorted; positions may repeat: empty pieces).
    pub fn cuts(&mut self, len: usize) -> [Vec<usize>; 2] {
        let mut some: Vec<usize> = (0..self.below(4)).map(|_| self.below(len + 1)).collect();
        some.sort_unstable();
        [(1..len).collect(), some]
    }
}

/// `data` cut at `cuts` (positions in order): the pieces, the last one up to the end.
pub fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut from = 0;
    let mut out = Vec::new();
    for &to in cuts.iter().chain([data.len()].iter()) {
        let to = to.clamp(from, data.len());
        out.push(&data[from..to]);
        from = to;
    }
    out
}
