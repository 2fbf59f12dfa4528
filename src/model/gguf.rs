//! Opens a GGUF file, checks that it is whole, and reads its metadata with errors that name the
//! missing key (which architectures are supported is the registry's to say: `arch::load`).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;

use crate::error::{Error, Result};

/// An opened, validated GGUF file: its header and a reader for its tensors.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    /// Opens `path`, parses the header and checks that every tensor's bytes are in the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::read(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::read(path, e))?.len();
        let mut reader = BufReader::new(file);
        let unreadable = |e: &str| {
            Error::model(
                path,
                format!(
                    "not a readable GGUF file ({e}); the file is corrupt or truncated: download it again (for the default model: ./models/fetch-default.sh)"
                ),
            )
        };
        // Every count and size is checked against the file's length before candle allocates.
        let scan = super::gguf_scan::scan(&mut reader, file_len)
            .map_err(|e| unreadable(&e.to_string()))?;
        let content = Content::read(&mut reader).map_err(|e| {
            // candle's message may span lines (with a backtrace); one line is enough here.
            unreadable(e.to_string().lines().next().unwrap_or_default())
        })?;
        let needed = scan.needed;
        if file_len < needed {
            return Err(Error::model(
                path,
                format!(
                    "GGUF file is truncated: {file_len} bytes, its tensors need {needed}; download it again (for the default model: ./models/fetch-default.sh)"
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `general.architecture`, as the file names it (loading checks it against the registry of
    /// architectures).
    pub fn architecture(&self) -> Result<String> {
        self.string("general.architecture")
    }

    /// A metadata value, or None when the key is absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| {
            Error::model(&self.path, format!("GGUF metadata key '{key}' is missing; the file was not converted for this architecture"))
        })
    }

    fn wrong_type(&self, key: &str, want: &str) -> Error {
        Error::model(
            &self.path,
            format!("GGUF metadata key '{key}' is not {want}"),
        )
    }

    /// A required unsigned integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        let n = match v {
            Value::U8(x) => *x as u64,
            Value::U16(x) => *x as u64,
            Value::U32(x) => *x as u64,
            Value::U64(x) => *x,
            Value::I32(x) if *x >= 0 => *x as u64,
            Value::I64(x) if *x >= 0 => *x as u64,
            _ => return Err(self.wrong_type(key, "an unsigned integer")),
        };
        Ok(n as usize)
    }

    /// An optional unsigned integer.
    pub(crate) fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.usize(key).map(Some),
        }
    }

    /// A required float.
    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.require(key)? {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            _ => Err(self.wrong_type(key, "a float")),
        }
    }

    /// A required string.
    pub fn string(&self, key: &str) -> Result<String> {
        match self.require(key)? {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.wrong_type(key, "a string")),
        }
    }

    /// An optional bool.
    pub(crate) fn bool_opt(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A required array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.require(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.wrong_type(key, "an array of strings")),
                })
                .collect(),
            _ => Err(self.wrong_type(key, "an array of strings")),
        }
    }

    /// A required array of floats.
    pub fn floats(&self, key: &str) -> Result<Vec<f32>> {
        match self.require(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::F32(x) => Ok(*x),
                    Value::F64(x) => Ok(*x as f32),
                    _ => Err(self.wrong_type(key, "an array of floats")),
                })
                .collect(),
            _ => Err(self.wrong_type(key, "an array of floats")),
        }
    }

    /// An optional array of integers.
    pub(crate) fn ints_opt(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::I32(x) => Ok(*x as i64),
                    Value::U32(x) => Ok(*x as i64),
                    Value::I8(x) => Ok(*x as i64),
                    Value::U8(x) => Ok(*x as i64),
                    Value::I64(x) => Ok(*x),
                    _ => Err(self.wrong_type(key, "an array of integers")),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(self.wrong_type(key, "an array of integers")),
        }
    }

    /// The dimensions of a stored tensor (outermost first, as candle orders them), if present.
    pub fn tensor_dims(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|i| i.shape.dims())
    }

    /// The names of the stored tensors (in no particular order).
    pub fn tensor_names(&self) -> Vec<String> {
        self.content.tensor_infos.keys().cloned().collect()
    }

    /// How many tensors the file holds.
    pub(crate) fn tensor_count(&self) -> usize {
        self.content.tensor_infos.len()
    }

    /// An optional float: `None` when absent, an error when present with another type.
    pub(crate) fn f32_opt(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.f32(key).map(Some),
        }
    }

    /// Whether the file holds a tensor of this name.
    pub(crate) fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads one tensor onto `device`.
    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(Error::model(&self.path, format!("tensor '{name}' is missing; the file is incomplete or not a model of its declared architecture")));
        }
        self.content
            .tensor(&mut self.reader, name, device)
            .map_err(|e| {
                // candle appends a backtrace under RUST_BACKTRACE=1: keep the first line.
                let e = e.to_string();
                let e = e.lines().next().unwrap_or_default();
                Error::model(&self.path, format!("cannot read tensor '{name}': {e}; the file may be corrupt, download it again"))
            })
    }
}
