"""Spreadsheet files the service writes (CSV and XLSX), with one rule for what a cell may hold.

Anyone can type text on the public form, in an email reply or in the address book, and a
spreadsheet runs a cell beginning with ``=``, ``+``, ``-``, ``@`` (or a tab, a carriage return)
as a formula. Every file goes through :func:`safe_text` (CSV) or :class:`XlsxWriter` (XLSX, where
such text is stored as text, never a formula or an error value).

- CSV: UTF-8 with a BOM, ``;``-separated, CRLF line ends. That is what Excel in a French locale
  opens correctly with a double click: it splits on the system's list separator, which is ``;``
  in France (``,`` is the decimal mark), and it reads UTF-8 only when the BOM says so (without
  it accents come out as « Ã© »). LibreOffice detects both.
- XLSX: openpyxl's write-only mode (rows streamed to disk, constant memory); dates are real
  date cells in Paris time, numbers are numbers, text is always text.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime
from typing import Any

from markupsafe import Markup
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from app.dates import PARIS

# A cell starting with one of these is a formula to a spreadsheet...
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ...unless it is a plain number or a phone number.
_PLAIN_NUMBER = re.compile(r"^[+-]?[\d\s.,()/]*\d[\d\s.,()/]*$")


def safe_text(value: Any) -> str:
    """``value`` as a CSV cell: text a spreadsheet would run as a formula is prefixed with an
    apostrophe (shown as typed, never run), except plain numbers and phone numbers."""
    text = _text(value).replace("\x00", "")
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value.striptags()
    return str(value)


def _paris_naive(_view: Any, value: datetime, *_args: Any) -> datetime:
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return aware.astimezone(PARIS).replace(tzinfo=None)


class CsvWriter:
    def __init__(self, file: Any, headers: list[str], _title: str) -> None:
        self.file = file
        self.text = io.TextIOWrapper(self.file, encoding="utf-8-sig", newline="")
        self.csv = csv.writer(self.text, delimiter=";")
        self.csv.writerow(headers)

    @staticmethod
    def type_formatters(view_formatters: dict) -> dict:
        return view_formatters

    def write(self, values: list[Any]) -> None:
        self.csv.writerow([safe_text(value) for value in values])

    def finish(self) -> bytes:
        self.text.flush()
        self.text.detach()
        self.file.seek(0)
        return self.file.read()


class XlsxWriter:
    DATETIME_FORMAT = "DD/MM/YYYY HH:MM"
    DATE_FORMAT = "DD/MM/YYYY"

    def __init__(self, file: Any, headers: list[str], title: str) -> None:
        self._cell_class = WriteOnlyCell
        # Control characters a worksheet cannot hold (openpyxl would refuse the whole file).
        self._illegal = ILLEGAL_CHARACTERS_RE
        self._error_codes = frozenset(ERROR_CODES)
        self.book = Workbook(write_only=True)
        self.add_sheet(headers, title)
        self.file = file

    def add_sheet(self, headers: list[str], title: str) -> None:
        """Start a sheet (headers bold, first row frozen): the next rows go there."""
        self.sheet = self.book.create_sheet(title=self._illegal.sub("", title)[:31])
        self.sheet.freeze_panes = "A2"
        for index, header in enumerate(headers, start=1):
            self.sheet.column_dimensions[get_column_letter(index)].width = min(max(len(header) + 4, 14), 40)
        bold = Font(bold=True)
        header_cells = []
        for header in headers:
            cell = WriteOnlyCell(self.sheet, value=ILLEGAL_CHARACTERS_RE.sub("", header))
            cell.font = bold
            header_cells.append(cell)
        self.sheet.append(header_cells)

    @staticmethod
    def type_formatters(view_formatters: dict) -> dict:
        # Dates stay dates (in Paris time) for the spreadsheet to sort and compute with.
        return {**view_formatters, datetime: _paris_naive}

    def cell(self, value: Any) -> Any:
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return value
        if isinstance(value, datetime):
            cell = self._cell_class(self.sheet, value=value)
            cell.number_format = self.DATETIME_FORMAT
            return cell
        if isinstance(value, date):
            cell = self._cell_class(self.sheet, value=value)
            cell.number_format = self.DATE_FORMAT
            return cell
        text = self._illegal.sub("", _text(value))
        if not (text.startswith("=") or text in self._error_codes):
            return text
        cell = self._cell_class(self.sheet, value=text)
        # Text typed as « =… » or « #N/A » stays text: never a formula or an error value.
        cell.data_type = "s"
        return cell

    def write(self, values: list[Any]) -> None:
        self.sheet.append([self.cell(value) for value in values])

    def finish(self) -> bytes:
        self.book.save(self.file)
        self.file.seek(0)
        return self.file.read()


WRITERS = {"csv": CsvWriter, "xlsx": XlsxWriter}
