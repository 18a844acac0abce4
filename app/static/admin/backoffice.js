// Flask-Admin names the list's checkboxes by their title only ("Select record"): give them the
// same text as their accessible name, so screen readers and voice control find them by label.
document.querySelectorAll("input[type=checkbox][title]:not([aria-label])").forEach((box) => {
  box.setAttribute("aria-label", box.title);
});

// The list's « clear the search » link is an icon alone: name it.
document.querySelectorAll("form[role=search] a.align-middle:not([aria-label])").forEach((link) => {
  link.setAttribute("aria-label", "Effacer la recherche");
});
